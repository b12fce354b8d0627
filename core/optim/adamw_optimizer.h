/*
 * AdamW over a ParamStore: moments m and v in two flat buffers shaped like the parameters, and
 * one kernel call per optimizer group (weight-decayed tensors, then the rest, each contiguous in
 * the store). After the update each tensor's clamp (Kerple's p and a) is applied.
 * Gradient clipping by global L2 norm lives here too: one sum of squares over the whole gradient
 * buffer, accumulated in double in a fixed order.
 */
#pragma once

#include <cstdint>

#include "core/model/param_store.h"
#include "kernels/ops.h"

namespace dape {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class AdamW {
 public:
  AdamW(Ops& ops, ParamStore& params, const AdamWConfig& cfg);
  // Applies one update with learning rate lr; `step` is the 1-based update count (for bias
  // correction).
  void step(double lr, int64_t step);
  const Tensor& m() const { return m_.tensor(); }
  const Tensor& v() const { return v_.tensor(); }

 private:
  Ops& ops_;
  ParamStore& params_;
  AdamWConfig cfg_;
  DeviceBuffer m_, v_;
};

// The global L2 norm of `grads`; when max_norm > 0 and the norm exceeds it, grads are scaled by
// max_norm / norm. Returns the norm before clipping.
double clip_grad_norm(Ops& ops, const Tensor& grads, double max_norm);

}  // namespace dape
