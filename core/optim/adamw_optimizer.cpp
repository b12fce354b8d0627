#include "core/optim/adamw_optimizer.h"

#include <cmath>

namespace dape {

AdamW::AdamW(Ops& ops, ParamStore& params, const AdamWConfig& cfg)
    : ops_(ops), params_(params), cfg_(cfg) {
  m_ = ops.float_buffer({params.size()});
  v_ = ops.float_buffer({params.size()});
  ops.fill(m_, 0.0);
  ops.fill(v_, 0.0);
}

void AdamW::step(double lr, int64_t step) {
  for (ParamGroup g : {ParamGroup::decay, ParamGroup::no_decay}) {
    auto [begin, end] = params_.group_range(g);
    if (end <= begin) continue;
    const Shape s{end - begin};
    AdamWHyper h;
    h.lr = lr;
    h.beta1 = cfg_.beta1;
    h.beta2 = cfg_.beta2;
    h.eps = cfg_.eps;
    h.weight_decay = g == ParamGroup::decay ? cfg_.weight_decay : 0.0;
    h.step = step;
    ops_.adamw(params_.values().slice(begin, s), params_.grads().slice(begin, s),
               m_.tensor().slice(begin, s), v_.tensor().slice(begin, s), h);
  }
  params_.apply_clamps(ops_);
}

double clip_grad_norm(Ops& ops, const Tensor& grads, double max_norm) {
  const double norm = std::sqrt(ops.sum_squares(grads));
  if (max_norm > 0 && norm > max_norm) ops.scale(grads, max_norm / (norm + 1e-6));
  return norm;
}

}  // namespace dape
