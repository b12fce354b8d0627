/*
 * AdamW, one element at a time in double, in PyTorch's order (torch.optim.AdamW, single-tensor
 * path):
 *   p ← p · (1 − lr·wd)
 *   m ← β1·m + (1 − β1)·g
 *   v ← β2·v + (1 − β2)·g²
 *   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)
 * The update is memory bound (four streams of T), so computing it in double is free. m and v
 * are rounded to T when stored and the parameter step uses the stored values, as PyTorch's
 * update reads its float moment tensors: the step is a function of the state that a checkpoint
 * holds. p is rounded once, at the end.
 */
#include "kernels/cpu/adamw.h"

#include <cmath>

#include "common/check.h"

namespace dape::cpu {

template <class T>
void adamw(T* params, const T* grads, T* m, T* v, int64_t n, const AdamWHyper& h) {
  DAPE_CHECK(h.step >= 1, "adamw: step {} must be >= 1 (bias correction is 1-based)", h.step);
  const double decay = 1.0 - h.lr * h.weight_decay;
  const double b1 = h.beta1, b2 = h.beta2;
  const double step_size = h.lr / (1.0 - std::pow(b1, static_cast<double>(h.step)));
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(h.step)));
  const double eps = h.eps;
#pragma omp parallel for simd schedule(static) if (n >= (int64_t{1} << 15))
  for (int64_t i = 0; i < n; ++i) {
    const double g = grads[i];
    const T m_new = static_cast<T>(b1 * static_cast<double>(m[i]) + (1.0 - b1) * g);
    const T v_new = static_cast<T>(b2 * static_cast<double>(v[i]) + (1.0 - b2) * (g * g));
    m[i] = m_new;
    v[i] = v_new;
    const double denom = std::sqrt(static_cast<double>(v_new)) / bias_correction2_sqrt + eps;
    params[i] = static_cast<T>(static_cast<double>(params[i]) * decay -
                               step_size * static_cast<double>(m_new) / denom);
  }
}

template void adamw<float>(float*, const float*, float*, float*, int64_t, const AdamWHyper&);
template void adamw<double>(double*, const double*, double*, double*, int64_t, const AdamWHyper&);

}  // namespace dape::cpu
