#include "core/checkpoint/whole_model.h"

#include <cstring>

#include "common/check.h"

namespace dape {

namespace {

std::string to_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::vector<float> from_bytes(const std::string& s) {
  std::vector<float> v(s.size() / sizeof(float));
  std::memcpy(v.data(), s.data(), v.size() * sizeof(float));
  return v;
}

// Every rank's piece of `local_tensor`, assembled by `split`, into `whole_tensor`.
void gather_tensor(Ops& ops, const TensorSplit& split, const Tensor& local_tensor,
                   const Tensor& whole_tensor, Communicator& tp) {
  const std::vector<float> mine = download<float>(ops, local_tensor);
  std::vector<std::vector<float>> pieces;
  if (split.is_split()) {
    for (const auto& bytes : tp.all_gather_bytes(to_bytes(mine)))
      pieces.push_back(from_bytes(bytes));
  } else {
    pieces.push_back(mine);
  }
  upload(ops, whole_tensor, global_of(split, pieces));
}

}  // namespace

WholeModel::WholeModel(const ModelSpec& spec, Ops& ops) : ops_(ops) {
  ModelSpec whole = spec;
  whole.tp = 1;
  whole.tp_rank = 0;
  whole.register_params(params_);
  params_.allocate(ops, /*with_grads=*/false);
  optimizer_ = std::make_unique<AdamW>(ops, params_, AdamWConfig{});
}

void WholeModel::gather(const ParamStore& local, const AdamW* local_optimizer, Communicator& tp) {
  for (const auto& v : local.views()) {
    const ParamView& w = params_.view(v.spec.name);
    gather_tensor(ops_, v.spec.split, v.value, w.value, tp);
    if (local_optimizer) {
      gather_tensor(ops_, v.spec.split, local_optimizer->m().slice(v.offset, v.spec.shape),
                    optimizer_->m().slice(w.offset, w.spec.shape), tp);
      gather_tensor(ops_, v.spec.split, local_optimizer->v().slice(v.offset, v.spec.shape),
                    optimizer_->v().slice(w.offset, w.spec.shape), tp);
    }
  }
}

void WholeModel::scatter(ParamStore& local, AdamW* local_optimizer) {
  for (const auto& v : local.views()) {
    const ParamView& w = params_.view(v.spec.name);
    auto piece = [&](const Tensor& whole, const Tensor& into) {
      upload(ops_, into, local_of(v.spec.split, download<float>(ops_, whole)));
    };
    piece(w.value, v.value);
    if (local_optimizer) {
      piece(optimizer_->m().slice(w.offset, w.spec.shape),
            local_optimizer->m().slice(v.offset, v.spec.shape));
      piece(optimizer_->v().slice(w.offset, w.spec.shape),
            local_optimizer->v().slice(v.offset, v.spec.shape));
    }
  }
}

}  // namespace dape
