/*
 * Linear layers on the CPU: y = x Wᵀ + b with PyTorch's [out, in] weight layout, and backward.
 * Built on gemm(); the bias add and the bias gradient are OpenMP loops (the bias gradient
 * reduces over rows per column block, in a fixed order).
 */
#pragma once

#include <cstdint>

namespace dape::cpu {

// out [M, N] = x [M, K] · w [N, K]ᵀ (+ b [N] when b != nullptr).
template <class T>
void linear_forward(T* out, const T* x, const T* w, const T* b, int64_t M, int64_t N, int64_t K);

// dx [M, K] = dout · w (+= when accumulate_dx; skipped when dx == nullptr);
// dw [N, K] += doutᵀ · x;  db [N] += Σ_rows dout (skipped when db == nullptr).
template <class T>
void linear_backward(T* dx, T* dw, T* db, const T* dout, const T* x, const T* w, int64_t M,
                     int64_t N, int64_t K, bool accumulate_dx);

}  // namespace dape::cpu
