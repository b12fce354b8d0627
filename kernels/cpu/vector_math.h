/*
 * exp, erf and the normal CDF in float, written so that loops calling them vectorize.
 *
 * glibc's expf/erff are scalar calls: a loop over them runs one element at a time, which makes
 * the softmax in cross-entropy and exact GELU an order of magnitude slower than the memory they
 * touch. These versions are branch-free straight-line code (selects instead of ifs, bit casts
 * instead of ldexp, magic-number rounding instead of a call), so a `#pragma omp simd` loop over
 * them compiles to AVX-512 (or whatever -march allows) with no intrinsics.
 *
 * The price is a few ulp instead of glibc's correctly rounded results, and results below
 * FLT_MIN flushed to zero. Errors against the std:: functions in double, measured over every
 * float in the range (tests/unit/vector_math_test.cpp re-checks these bounds on a sample). Each
 * polynomial step is an explicit madd (kernels/cpu/madd.h): one fused multiply-add on CPUs with
 * FMA (x86-64-v3 and up), a multiply and an add without (x86-64-v2), which moves the last bits;
 * where that matters both figures are given, FMA first:
 *   vec_exp         x in [-87.33, 88.72]   relative 8.5e-8 (glibc expf: 6.0e-8)
 *   vec_erf         all x                  absolute 1.35e-7 / 1.52e-7 (glibc erff: 5.8e-8);
 *                                          relative 1.78e-7 / 1.83e-7 for normal |x| ≤ 1,
 *                                          9.0e-8 beyond
 *   vec_normal_cdf  x ≥ -13 (Φ ≥ FLT_MIN)  relative 5.0e-7, absolute 1.06e-7
 *   x · vec_normal_cdf(x) (GELU)           absolute 1.13e-7 · max(1, |x|)
 *
 * How: exp reduces x = n·ln2 + r with |r| ≤ ln2/2 and uses Cephes' degree-7 polynomial for e^r;
 * 2^n is built from the exponent bits in two halves so that n = 128 does not overflow. erf is
 * x·P(x²) for |x| ≤ 1 and 1 − erfc(|x|) beyond, with erfc(t) = u·exp(−t² + G(u)),
 * u = 1 / (1 + t/2) (the form of Numerical Recipes' erfcc). P (degree 6 in x², on |x| ≤ 1) and
 * G (degree 10 in u, on t ≥ 0.5) were fitted for this file by iteratively reweighted least
 * squares (Lawson's minimax iteration) in 40-digit arithmetic: 1.2e-9 relative for P, 6.9e-9
 * absolute in G (= relative in erfc), so the float evaluation, not the fit, sets the errors
 * above. G is evaluated in Estrin's scheme rather than Horner's: it sits on the critical path
 * (division → G → exp) whose latency, not the instruction count, limits throughput. The normal CDF
 * uses the same pieces, but takes the lower tail straight from erfc instead of 1 + erf, so Φ(x) for
 * x ≪ 0 keeps its relative accuracy where 0.5·(1 + erf(x/√2)) would cancel.
 *
 * NaN in gives NaN out (every select is written so that a NaN falls through to arithmetic).
 */
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/madd.h"

namespace dape::cpu {

// e^x in float. x > 88.72… gives +inf; x < −87.34 (result below FLT_MIN) gives 0.
inline float vec_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;     // ln 2 split so n · kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;  // ln 2 − kLn2Hi
  constexpr float kMaxArg = 88.7228394f;     // ≈ ln(FLT_MAX)
  constexpr float kMinArg = -87.3365448f;    // ≈ ln(FLT_MIN)
  constexpr float kRound = 12582912.0f;      // 1.5 · 2²³: adding it rounds to an integer
  constexpr uint32_t kRoundBits = 0x4B400000u;

  // Comparisons are false for NaN, so a NaN passes through to the arithmetic below.
  float xc = x > kMaxArg ? kMaxArg : x;
  xc = xc < kMinArg ? kMinArg : xc;
  const float shifted = madd(xc, kLog2e, kRound);
  const float n = shifted - kRound;  // round(x / ln 2), in [-126, 128]
  float r = madd(n, -kLn2Hi, xc);
  r = madd(n, -kLn2Lo, r);

  float p = 1.9875691500e-4f;
  p = madd(p, r, 1.3981999507e-3f);
  p = madd(p, r, 8.3334519073e-3f);
  p = madd(p, r, 4.1665795894e-2f);
  p = madd(p, r, 1.6666665459e-1f);
  p = madd(p, r, 5.0000001201e-1f);
  const float er = madd(p, r * r, r) + 1.0f;

  // 2^n as 2^(n/2) · 2^(n − n/2): each half stays a normal float for n in [-126, 128].
  const auto ni = static_cast<int32_t>(std::bit_cast<uint32_t>(shifted) - kRoundBits);
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  const float s1 = std::bit_cast<float>(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = std::bit_cast<float>(static_cast<uint32_t>(n2 + 127) << 23);
  const float result = er * s1 * s2;
  return x > kMaxArg ? std::numeric_limits<float>::infinity() : (x < kMinArg ? 0.0f : result);
}

namespace vector_math_detail {

constexpr float kErfSmall = 1.0f;  // erf: |x| ≤ this from the odd polynomial, beyond from erfc
constexpr float kCdfSmall = 0.5f;  // Φ: |x/√2| ≤ this from the polynomial (no cancellation
                                   // below Φ = 0.24), beyond from erfc

// erf(z) for |z| ≤ 1: z · P(z²).
inline float erf_small(float z) {
  const float s = z * z;
  float p = 7.85385782e-5f;
  p = madd(p, s, -8.01019254e-4f);
  p = madd(p, s, 5.18832775e-3f);
  p = madd(p, s, -2.68538110e-2f);
  p = madd(p, s, 1.12835854e-1f);
  p = madd(p, s, -3.76126260e-1f);
  p = madd(p, s, 1.12837911e+0f);
  return z * p;
}

// erfc(t) for t ≥ 0.5, given t² = t2 + t2_err exactly (the caller squares, so that
// the normal CDF can square x rather than the rounded x/√2):  u · exp(−t² + G(u)),
// u = 1 / (1 + t/2). exp(g − t²) would lose ≈ t²·2⁻²⁴ relative to the rounding of g − t²;
// the rounding errors of t² and of the difference (two-sum) go into a first-order correction
// factor instead.
inline float erfc_tail(float t, float t2, float t2_err) {
  const float u = 1.0f / (1.0f + 0.5f * t);
  const float u2 = u * u, u4 = u2 * u2, u8 = u4 * u4;
  // G(u) = Σ_k g_k u^k, k ≤ 10, in Estrin's scheme: pairs g_k + g_{k+1} u, then powers of u².
  const float g01 = madd(1.00000167e+0f, u, -1.26551211e+0f);
  const float g23 = madd(8.43658894e-2f, u, 3.74931067e-1f);
  const float g45 = madd(-1.24102384e-1f, u, -9.29685682e-2f);
  const float g67 = madd(-2.40341678e-1f, u, -7.49122351e-2f);
  const float g89 = madd(-7.63105035e-1f, u, 8.84071589e-1f);
  const float g0_3 = madd(g23, u2, g01), g4_7 = madd(g67, u2, g45);
  const float g8_10 = madd(2.17729032e-1f, u2, g89);
  const float g = madd(g8_10, u8, madd(g4_7, u4, g0_3));
  const float arg = g - t2;
  const float back = arg - g;
  const float arg_err = (g - (arg - back)) + (-t2 - back);  // g − t2 = arg + arg_err exactly
  return u * vec_exp(arg) * (1.0f + (arg_err - t2_err));
}

// a² − round(a²), exactly: one FMA where the CPU has it, else Dekker's product (a split into
// halves of 12 bits whose products are exact), which also vectorizes where a call to fmaf
// would not.
inline float square_error(float a, float a2) {
#if defined(__FMA__)
  return __builtin_fmaf(a, a, -a2);
#else
  const float c = 4097.0f * a;  // 2¹² + 1
  const float hi = c - (c - a), lo = a - hi;
  return ((hi * hi - a2) + 2.0f * hi * lo) + lo * lo;
#endif
}

// |a| capped at `cap` (NaN passes through).
inline float abs_capped(float a, float cap) {
  const float t = a < 0 ? -a : a;
  return t > cap ? cap : t;
}

}  // namespace vector_math_detail

// erf(x) in float.
inline float vec_erf(float x) {
  using namespace vector_math_detail;
  // erfc(10) ≈ 2e-45 is below every float: capping keeps t² finite.
  const float t = abs_capped(x, 10.0f);
  const float t2 = t * t;
  const float t2_err = square_error(t, t2);
  const float big = 1.0f - erfc_tail(t, t2, t2_err);
  const float signed_big = x < 0 ? -big : big;
  return t <= kErfSmall ? erf_small(x) : signed_big;
}

// Φ(x) = P(N(0,1) ≤ x) = ½ erfc(−x/√2) in float.
inline float vec_normal_cdf(float x) {
  using namespace vector_math_detail;
  const float z = x * 0.707106781186547524f;
  const float a = abs_capped(x, 14.2f);  // |z| ≤ 10
  const float a2 = a * a;
  const float a2_err = square_error(a, a2);
  const float half_tail = 0.5f * erfc_tail(a * 0.707106781186547524f, 0.5f * a2, 0.5f * a2_err);
  const float big = x < 0 ? half_tail : 1.0f - half_tail;
  const float small = 0.5f + 0.5f * erf_small(z);
  return (z < 0 ? -z : z) <= kCdfSmall ? small : big;
}

}  // namespace dape::cpu
