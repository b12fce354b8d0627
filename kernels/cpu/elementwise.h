/*
 * Elementwise kernels and the sum-of-squares reduction: fill, scale, add, clamp, exact GELU.
 * OpenMP loops the compiler vectorizes. sum_squares accumulates in double over fixed-size
 * blocks and adds the block sums in order, so the result does not depend on the thread count.
 */
#pragma once

#include <cstdint>

namespace dape::cpu {

template <class T>
void fill(T* x, int64_t n, T value);
template <class T>
void scale(T* x, int64_t n, T factor);
template <class T>
void add(T* out, const T* a, const T* b, int64_t n);  // out may alias a or b
template <class T>
void clamp_min(T* x, int64_t n, T lo);
template <class T>
double sum_squares(const T* x, int64_t n);

// GELU(x) = x · Φ(x) = 0.5 x (1 + erf(x / √2)).
template <class T>
void gelu_forward(T* out, const T* x, int64_t n);
// dx = dout · (Φ(x) + x φ(x)); dx may alias dout.
template <class T>
void gelu_backward(T* dx, const T* x, const T* dout, int64_t n);

}  // namespace dape::cpu
