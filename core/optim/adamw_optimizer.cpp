#include "core/optim/adamw_optimizer.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace dape {

AdamW::AdamW(Ops& ops, ParamStore& params, const AdamWConfig& cfg, Communicator* shard_over)
    : ops_(ops), params_(params), cfg_(cfg), shard_over_(shard_over) {
  const int64_t P = params.size();
  if (shard_over_ && shard_over_->size() == 1) shard_over_ = nullptr;
  if (shard_over_) {
    const int64_t n = shard_over_->size(), r = shard_over_->rank();
    shard_size_ = (P + n - 1) / n;
    shard_begin_ = std::min(P, r * shard_size_);
    shard_end_ = std::min(P, (r + 1) * shard_size_);
    gather_in_ = ops.float_buffer({shard_size_});
    gather_out_ = ops.float_buffer({n * shard_size_});
    ops.fill(gather_in_, 0.0);
  } else {
    shard_begin_ = 0;
    shard_end_ = shard_size_ = P;
  }
  // A rank whose shard is empty (more ranks than elements) still keeps one element of moments.
  const int64_t kept = std::max<int64_t>(1, shard_end_ - shard_begin_);
  m_ = ops.float_buffer({kept});
  v_ = ops.float_buffer({kept});
  ops.fill(m_, 0.0);
  ops.fill(v_, 0.0);
}

void AdamW::step(double lr, int64_t step) {
  for (const ParamRun& run : params_.runs()) {
    const int64_t begin = std::max(run.begin, shard_begin_), end = std::min(run.end, shard_end_);
    if (end <= begin) continue;
    const Shape s{end - begin};
    AdamWHyper h;
    h.lr = lr;
    h.beta1 = cfg_.beta1;
    h.beta2 = cfg_.beta2;
    h.eps = cfg_.eps;
    h.weight_decay = run.group == ParamGroup::decay ? cfg_.weight_decay : 0.0;
    h.step = step;
    ops_.adamw(params_.values().slice(begin, s), params_.grads().slice(begin, s),
               m_.tensor().slice(begin - shard_begin_, s),
               v_.tensor().slice(begin - shard_begin_, s), h);
  }
  if (shard_over_) {
    // Every rank's updated shard to every rank.
    const int64_t mine = shard_end_ - shard_begin_;
    if (mine > 0) {
      ops_.copy(gather_in_.tensor().slice(0, {mine}), params_.values().slice(shard_begin_, {mine}));
    }
    shard_over_->all_gather(gather_out_, gather_in_);
    ops_.copy(params_.values(), gather_out_.tensor().slice(0, {params_.size()}));
  }
  params_.apply_clamps(ops_);
}

const Tensor& AdamW::m() const {
  if (!shard_over_) return m_.tensor();
  DAPE_CHECK(m_full_.defined(), "full moments requested without gather_moments()");
  return m_full_.tensor();
}

const Tensor& AdamW::v() const {
  if (!shard_over_) return v_.tensor();
  DAPE_CHECK(v_full_.defined(), "full moments requested without gather_moments()");
  return v_full_.tensor();
}

void AdamW::prepare_full_moments() {
  DAPE_CHECK(shard_over_, "prepare_full_moments on an unsharded optimizer");
  if (!m_full_.defined()) m_full_ = ops_.float_buffer({params_.size()});
  if (!v_full_.defined()) v_full_ = ops_.float_buffer({params_.size()});
}

void AdamW::gather_moments() {
  prepare_full_moments();
  const int64_t mine = shard_end_ - shard_begin_;
  for (auto [shard, full] : {std::pair{&m_, &m_full_}, std::pair{&v_, &v_full_}}) {
    ops_.fill(gather_in_, 0.0);
    if (mine > 0) ops_.copy(gather_in_.tensor().slice(0, {mine}), shard->tensor().slice(0, {mine}));
    shard_over_->all_gather(gather_out_, gather_in_);
    ops_.copy(*full, gather_out_.tensor().slice(0, {params_.size()}));
  }
}

void AdamW::scatter_moments() {
  DAPE_CHECK(m_full_.defined() && v_full_.defined(), "scatter_moments without full moments");
  const int64_t mine = shard_end_ - shard_begin_;
  if (mine > 0) {
    ops_.copy(m_.tensor().slice(0, {mine}), m_full_.tensor().slice(shard_begin_, {mine}));
    ops_.copy(v_.tensor().slice(0, {mine}), v_full_.tensor().slice(shard_begin_, {mine}));
  }
  release_full_moments();
}

void AdamW::release_full_moments() {
  m_full_.reset();
  v_full_.reset();
}

double clip_grad_norm(Ops& ops, const Tensor& grads, double max_norm) {
  const double norm = std::sqrt(ops.sum_squares(grads));
  if (max_norm > 0 && norm > max_norm) ops.scale(grads, max_norm / (norm + 1e-6));
  return norm;
}

double clip_grad_norm(Ops& ops, const ParamStore& params, Communicator& tp, double max_norm) {
  if (tp.size() == 1) return clip_grad_norm(ops, params.grads(), max_norm);
  double split = 0, replicated = 0;
  for (const auto& v : params.views())
    (v.spec.split.is_split() ? split : replicated) += ops.sum_squares(v.grad);
  const double norm = std::sqrt(tp.all_reduce_sum(split) + replicated);
  if (max_norm > 0 && norm > max_norm) ops.scale(params.grads(), max_norm / (norm + 1e-6));
  return norm;
}

}  // namespace dape
