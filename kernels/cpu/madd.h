/*
 * madd(a, b, c) = a·b + c, rounded once where the CPU has FMA and twice where it has not: the
 * one way the CPU kernels multiply-add.
 *
 * The build compiles every C++ file with -ffp-contract=off, so the compiler never fuses a·b + c
 * on its own. Left to itself it fuses by heuristics that depend on the -mtune target (GCC's
 * tunings for AMD Zen avoid FMA chains in some loops and not in others), and the same sum then
 * rounds differently in two register-tile shapes, or in a vectorized loop body and its scalar
 * remainder: a row's result would depend on the rows computed with it, a training step on the
 * thread count. Written as madd, every code path of one build rounds alike; builds for
 * different ISA levels (FMA or not, 16-, 32- or 64-byte vectors) differ from each other in the
 * last bits, as the guide says.
 *
 * In an `omp simd` loop the scalar form vectorizes to vector FMAs (GCC maps __builtin_fma to
 * its vectorizable FMA operation); simd_rows.h adds the forms for its vector types.
 */
#pragma once

namespace dape::cpu {

inline float madd(float a, float b, float c) {
#if defined(__FMA__)
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

inline double madd(double a, double b, double c) {
#if defined(__FMA__)
  return __builtin_fma(a, b, c);
#else
  return a * b + c;
#endif
}

}  // namespace dape::cpu
