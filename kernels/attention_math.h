/*
 * The scalar math of the position schemes and of DAPE's activations, shared by the CPU reference
 * and the CUDA kernels (every function is host+device, templated on the float type, and free of
 * std:: containers).
 *
 *   ALiBi   B = −m_h·(i−j), m_h the geometric slopes of the ALiBi reference `get_slopes(H)`:
 *           2^(−8(h+1)/H) for a power-of-2 H; otherwise the slopes of the largest power of 2
 *           P < H, followed by every other slope of 2P (the interleaved extension).
 *   Kerple  B = −p·log(1 + a·(i−j)) (log variant); p and a are used as max(value, 1e-2), and
 *           their gradients pass straight through to the stored values.
 *   FIRE    u(i, j) = ψ(i−j) / (ψ(max(i, thr)) + eps), ψ(x) = log(|c·x| + 1), thr = |L_mult·L|;
 *           B[:, i, j] = g(u) with g = Linear(1→W) → act → Linear(W→H).
 *   f, g    LeakyReLU(0.01) or ReLU between their two Linear layers.
 *
 * Derivatives follow PyTorch's autograd conventions where the function has kinks, so gradients
 * match the reference implementation exactly: d|x|/dx = sign(x) with sign(0) = 0; torch.max(a, b)
 * sends half the gradient to each side at a tie; LeakyReLU'(0) = slope and ReLU'(0) = 0.
 */
#pragma once

#include <math.h>

#if defined(__CUDACC__)
#define DAPE_HD __host__ __device__
#else
#define DAPE_HD
#endif

namespace dape::attention_math {

constexpr double kLeakySlope = 0.01;      // f's LeakyReLU, and g's under DAPE
constexpr double kFireEps = 1e-6;         // added to FIRE's normalizer
constexpr double kKerpleClampMin = 1e-2;  // Kerple's p and a are used as max(value, this)
constexpr double kFireDefaultL = 512.0;   // FIRE's L; the threshold is |L_mult · L|
constexpr double kRopeBase = 10000.0;

// ---- float-type dispatch of the C math functions (host and device overloads exist for both) ----
DAPE_HD inline float math_log1p(float x) {
  return ::log1pf(x);
}
DAPE_HD inline double math_log1p(double x) {
  return ::log1p(x);
}
DAPE_HD inline float math_exp2(float x) {
  return ::exp2f(x);
}
DAPE_HD inline double math_exp2(double x) {
  return ::exp2(x);
}
DAPE_HD inline float math_abs(float x) {
  return ::fabsf(x);
}
DAPE_HD inline double math_abs(double x) {
  return ::fabs(x);
}

// sign(x) ∈ {−1, 0, 1}, as torch.sign (the derivative of |x| that autograd uses).
template <class T>
DAPE_HD inline T sign(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

// ---- activations ------------------------------------------------------------------------------
template <class T>
DAPE_HD inline T leaky_relu(T x) {
  return x > T(0) ? x : T(kLeakySlope) * x;
}
template <class T>
DAPE_HD inline T leaky_relu_grad(T x) {
  return x > T(0) ? T(1) : T(kLeakySlope);
}
template <class T>
DAPE_HD inline T relu(T x) {
  return x > T(0) ? x : T(0);
}
template <class T>
DAPE_HD inline T relu_grad(T x) {
  return x > T(0) ? T(1) : T(0);
}
// LeakyReLU(0.01) when leaky, else ReLU.
template <class T>
DAPE_HD inline T activation(T x, bool leaky) {
  return leaky ? leaky_relu(x) : relu(x);
}
template <class T>
DAPE_HD inline T activation_grad(T x, bool leaky) {
  return leaky ? leaky_relu_grad(x) : relu_grad(x);
}
// The slope below zero: 0.01 for LeakyReLU, 0 for ReLU (vectorized kernels take it as a number).
template <class T>
DAPE_HD inline T activation_negative_slope(bool leaky) {
  return leaky ? T(kLeakySlope) : T(0);
}

// ---- ALiBi ------------------------------------------------------------------------------------
// The slope of head `head` (0-based) of `heads`, as the ALiBi reference get_slopes(heads)[head].
template <class T>
DAPE_HD inline T alibi_slope(int head, int heads) {
  int p = 1;  // the largest power of 2 not above heads
  while (p * 2 <= heads) p *= 2;
  if (head < p) return static_cast<T>(math_exp2(-8.0 * (head + 1) / p));
  // get_slopes(2p)[0::2]: the slopes 2^(−8(k+1)/(2p)) of the even k = 2·(head − p).
  const int k = 2 * (head - p);
  return static_cast<T>(math_exp2(-8.0 * (k + 1) / (2 * p)));
}

// B = −m·(i − j) for rel = i − j ≥ 0.
template <class T>
DAPE_HD inline T alibi_bias(T slope, T rel) {
  return -slope * rel;
}

// ---- Kerple (log) -----------------------------------------------------------------------------
// The value used for a stored p or a: max(value, 1e-2). Gradients pass through unchanged.
template <class T>
DAPE_HD inline T kerple_clamp(T x) {
  return x < T(kKerpleClampMin) ? T(kKerpleClampMin) : x;
}
// B = −p·log(1 + a·rel), with p, a already clamped.
template <class T>
DAPE_HD inline T kerple_bias(T p, T a, T rel) {
  return -p * math_log1p(a * rel);
}
// ∂B/∂p = −log(1 + a·rel).
template <class T>
DAPE_HD inline T kerple_bias_dp(T a, T rel) {
  return -math_log1p(a * rel);
}
// ∂B/∂a = −p·rel / (1 + a·rel).
template <class T>
DAPE_HD inline T kerple_bias_da(T p, T a, T rel) {
  return -p * rel / (T(1) + a * rel);
}

// ---- FIRE -------------------------------------------------------------------------------------
// ψ(x) = log(|c·x| + 1).
template <class T>
DAPE_HD inline T fire_psi(T c, T x) {
  return math_log1p(math_abs(c * x));
}
// ∂ψ/∂c = sign(c·x)·x / (|c·x| + 1).
template <class T>
DAPE_HD inline T fire_psi_dc(T c, T x) {
  return sign(c * x) * x / (math_abs(c * x) + T(1));
}
// ∂ψ/∂x = sign(c·x)·c / (|c·x| + 1).
template <class T>
DAPE_HD inline T fire_psi_dx(T c, T x) {
  return sign(c * x) * c / (math_abs(c * x) + T(1));
}
// thr = |L_mult·L| and ∂thr/∂L_mult = sign(L_mult·L)·L.
template <class T>
DAPE_HD inline T fire_threshold(T L_mult, T L) {
  return math_abs(L_mult * L);
}
template <class T>
DAPE_HD inline T fire_threshold_dmult(T L_mult, T L) {
  return sign(L_mult * L) * L;
}
// max(pos, thr) and its derivative w.r.t. thr: 1, 0, or ½ at a tie (torch.max(a, b)).
template <class T>
DAPE_HD inline T fire_normalizer_position(T pos, T thr) {
  return pos > thr ? pos : thr;
}
template <class T>
DAPE_HD inline T fire_normalizer_position_dthr(T pos, T thr) {
  return thr > pos ? T(1) : (thr < pos ? T(0) : T(0.5));
}

// FIRE's normalized distance of query position `pos` (i) and relative distance `rel` (i − j),
// with its derivatives w.r.t. c and L_mult.
template <class T>
struct FireDistance {
  T u;
  T du_dc;
  T du_dmult;
};

template <class T>
DAPE_HD inline FireDistance<T> fire_distance(T pos, T rel, T c, T L_mult, T L, T eps) {
  const T thr = fire_threshold(L_mult, L);
  const T m = fire_normalizer_position(pos, thr);
  const T num = fire_psi(c, rel);
  const T den = fire_psi(c, m) + eps;
  const T inv_den = T(1) / den;
  const T u_over_den = num * inv_den * inv_den;
  FireDistance<T> r;
  r.u = num * inv_den;
  r.du_dc = fire_psi_dc(c, rel) * inv_den - u_over_den * fire_psi_dc(c, m);
  const T du_dm = -u_over_den * fire_psi_dx(c, m);
  r.du_dmult = du_dm * fire_normalizer_position_dthr(pos, thr) * fire_threshold_dmult(L_mult, L);
  return r;
}

}  // namespace dape::attention_math
