/*
 * AdamW with PyTorch's semantics: decoupled weight decay p -= lr·wd·p, then
 * m = β1 m + (1−β1) g,  v = β2 v + (1−β2) g²,  p -= lr · m̂ / (√v̂ + eps) with bias-corrected
 * m̂ = m / (1−β1^t), v̂ = v / (1−β2^t). Elementwise over one contiguous range.
 */
#pragma once

#include <cstdint>

#include "kernels/ops.h"

namespace dape::cpu {

template <class T>
void adamw(T* params, const T* grads, T* m, T* v, int64_t n, const AdamWHyper& h);

}  // namespace dape::cpu
