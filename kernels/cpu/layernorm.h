/*
 * LayerNorm over the last dimension (eps 1e-5), forward and backward, one row per OpenMP
 * iteration. Row statistics are computed in double for float inputs (two passes: mean, then
 * variance), so long rows do not lose precision; mean and 1/std are saved for backward.
 */
#pragma once

#include <cstdint>

namespace dape::cpu {

constexpr double kLayerNormEps = 1e-5;

template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t rows,
                       int64_t C);

// dx += ..., dw += ..., db += ... (dw and db reduced over rows in a fixed order).
template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dout, const T* x, const T* w, const T* mean,
                        const T* rstd, int64_t rows, int64_t C);

}  // namespace dape::cpu
