/*
 * Vectorized kernels over "row panels": small matrices whose long dimension runs along the key
 * index j of one attention row. The reference attention evaluates f, g and the per-head products
 * of a query row as such panels: f's hidden layer is Z[W][j] = W1[W][2H] · X[2H][j], its
 * weight gradient is dW1[W][2H] += dZ[W][j] · X[2H][j]ᵀ, and so on.
 *
 * A panel is `rows` rows of `ld` elements each; kernels run over the first `np` columns, where
 * np is a multiple of the SIMD width (callers pad rows to it). Two shapes of work:
 *   panel_gemm:   Y[m][:] (+)= bias[m] + Σ_k A(m, k) · X[k][:]   (A small, scalar-broadcast)
 *   panel_outer:  acc[m][n] += X[m][:] ⊙ Y[n][:]                   (lane-wise, reduced later)
 * Both keep a register tile of accumulators (rows × SIMD vectors) and stream the panel once, so
 * the inner loop is loads and FMAs. Lane accumulators are reduced by the caller in a fixed lane
 * order, which keeps the results independent of threads.
 *
 * The SIMD type is GCC/Clang's vector extension sized to the widest enabled ISA (AVX-512, AVX,
 * else SSE), so the code is portable and the compiler emits plain vector loads and FMAs.
 *
 * Multiply-adds are written as madd(a, b, c) (kernels/cpu/madd.h, with vector forms here): the
 * compiler does not fuse on its own, so two tile shapes that compute the same sum, or a vector
 * body and its scalar tail, round alike and a row's result does not depend on its tile.
 */
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/madd.h"

namespace dape::cpu::simd {

#if defined(__AVX512F__)
constexpr int kBytes = 64;
#elif defined(__AVX__)
constexpr int kBytes = 32;
#else
constexpr int kBytes = 16;
#endif

template <class T>
struct VecOf {
  typedef T type __attribute__((vector_size(kBytes)));
};
template <class T>
using Vec = typename VecOf<T>::type;
template <class T>
constexpr int kLanes = kBytes / static_cast<int>(sizeof(T));

// a·b + c lane by lane, rounded as the scalar cpu::madd rounds, so a tail loop agrees with the
// vector body.
using cpu::madd;
inline Vec<float> madd(const Vec<float>& a, const Vec<float>& b, const Vec<float>& c) {
#if defined(__AVX512F__)
  return _mm512_fmadd_ps(a, b, c);
#elif defined(__FMA__) && defined(__AVX__)
  return _mm256_fmadd_ps(a, b, c);
#elif defined(__FMA__)
  return _mm_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}
inline Vec<double> madd(const Vec<double>& a, const Vec<double>& b, const Vec<double>& c) {
#if defined(__AVX512F__)
  return _mm512_fmadd_pd(a, b, c);
#elif defined(__FMA__) && defined(__AVX__)
  return _mm256_fmadd_pd(a, b, c);
#elif defined(__FMA__)
  return _mm_fmadd_pd(a, b, c);
#else
  return a * b + c;
#endif
}
// A scalar times a vector, plus a vector.
inline Vec<float> madd(float a, const Vec<float>& b, const Vec<float>& c) {
  return madd(Vec<float>{} + a, b, c);
}
inline Vec<double> madd(double a, const Vec<double>& b, const Vec<double>& c) {
  return madd(Vec<double>{} + a, b, c);
}

// n rounded up to a whole number of SIMD vectors.
template <class T>
constexpr int padded(int n) {
  return (n + kLanes<T> - 1) / kLanes<T> * kLanes<T>;
}

template <class T>
inline Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <class T>
inline void store(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}
template <class T>
inline Vec<T> splat(T x) {
  return Vec<T>{} + x;
}
// Σ of the lanes, in lane order (T is not deduced: lane_sum<T>(v)).
template <class T>
inline T lane_sum(const Vec<T>& v) {
  T s = 0;
  for (int l = 0; l < kLanes<T>; ++l) s += v[l];
  return s;
}

// ---- panel_gemm -----------------------------------------------------------------------------

// What panel_gemm does to each result vector before storing it: nothing, by default. An
// epilogue is called as epi(v, m, j) for the vector of row m (of the whole call) starting at
// column j, and returns what to store; it fuses an elementwise step (an activation, its
// derivative, the softmax gradient) into the GEMM instead of a second pass over the panel.
struct NoEpilogue {
  template <class V>
  V operator()(const V& v, int, int64_t) const {
    return v;
  }
};

// R output rows × TB vectors of columns starting at column j; m0 is the first row's index.
template <class T, int R, int TB, class Epi>
inline void gemm_tile(int K, const T* a, int64_t a_row, int64_t a_col, const T* x, int64_t ldx,
                      T* y, int64_t ldy, int64_t j, const T* bias, bool accumulate, int m0,
                      const Epi& epi) {
  constexpr int L = kLanes<T>;
  Vec<T> acc[R][TB];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TB; ++t) {
      acc[r][t] = accumulate ? load(y + r * ldy + j + t * L) : Vec<T>{};
      if (bias) acc[r][t] += bias[r];
    }
  for (int k = 0; k < K; ++k) {
    Vec<T> xv[TB];
    for (int t = 0; t < TB; ++t) xv[t] = load(x + k * ldx + j + t * L);
    for (int r = 0; r < R; ++r) {
      const T av = a[r * a_row + k * a_col];
      for (int t = 0; t < TB; ++t) acc[r][t] = madd(av, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TB; ++t) store(y + r * ldy + j + t * L, epi(acc[r][t], m0 + r, j + t * L));
}

template <class T, int R, class Epi>
inline void gemm_rows(int K, const T* a, int64_t a_row, int64_t a_col, const T* x, int64_t ldx,
                      T* y, int64_t ldy, int np, const T* bias, bool accumulate, int m0,
                      const Epi& epi) {
  constexpr int L = kLanes<T>;
  const int tiles = np / L;
  int t = 0;
  // 16 accumulators in flight (R rows × TB vectors), narrower tiles for what is left of the row:
  // each step loads TB vectors of X and R scalars of A for R·TB multiply-adds.
  if constexpr (R <= 2)
    for (; t + 8 <= tiles; t += 8)
      gemm_tile<T, R, 8>(K, a, a_row, a_col, x, ldx, y, ldy, int64_t{t} * L, bias, accumulate, m0,
                         epi);
  if constexpr (R <= 4)
    for (; t + 4 <= tiles; t += 4)
      gemm_tile<T, R, 4>(K, a, a_row, a_col, x, ldx, y, ldy, int64_t{t} * L, bias, accumulate, m0,
                         epi);
  if constexpr (R <= 8)
    for (; t + 2 <= tiles; t += 2)
      gemm_tile<T, R, 2>(K, a, a_row, a_col, x, ldx, y, ldy, int64_t{t} * L, bias, accumulate, m0,
                         epi);
  for (; t < tiles; ++t)
    gemm_tile<T, R, 1>(K, a, a_row, a_col, x, ldx, y, ldy, int64_t{t} * L, bias, accumulate, m0,
                       epi);
}

// Y[m][0..np) = epi((accumulate ? Y[m] : 0) + (bias ? bias[m] : 0) + Σ_k A(m, k) · X[k][0..np))
// for m < M, with A(m, k) = a[m·a_row + k·a_col] (so a transposed A is a stride swap).
template <class T, class Epi = NoEpilogue>
void panel_gemm(int M, int K, const T* a, int64_t a_row, int64_t a_col, const T* x, int64_t ldx,
                T* y, int64_t ldy, int np, const std::type_identity_t<T>* bias, bool accumulate,
                const Epi& epi = Epi()) {
  int m = 0;
  for (; m + 8 <= M; m += 8)
    gemm_rows<T, 8>(K, a + m * a_row, a_row, a_col, x, ldx, y + m * ldy, ldy, np,
                    bias ? bias + m : nullptr, accumulate, m, epi);
  for (; m + 4 <= M; m += 4)
    gemm_rows<T, 4>(K, a + m * a_row, a_row, a_col, x, ldx, y + m * ldy, ldy, np,
                    bias ? bias + m : nullptr, accumulate, m, epi);
  for (; m < M; ++m)
    gemm_rows<T, 1>(K, a + m * a_row, a_row, a_col, x, ldx, y + m * ldy, ldy, np,
                    bias ? bias + m : nullptr, accumulate, m, epi);
}

// ---- panel_outer ----------------------------------------------------------------------------

template <class T, int RM, int RN>
inline void outer_tile(int tiles, const T* x, int64_t ldx, const T* y, int64_t ldy, Vec<T>* acc,
                       int64_t acc_ld) {
  constexpr int L = kLanes<T>;
  Vec<T> s[RM][RN];
  for (int r = 0; r < RM; ++r)
    for (int c = 0; c < RN; ++c) s[r][c] = acc[r * acc_ld + c];
  for (int t = 0; t < tiles; ++t) {
    Vec<T> xv[RM], yv[RN];
    for (int r = 0; r < RM; ++r) xv[r] = load(x + r * ldx + t * L);
    for (int c = 0; c < RN; ++c) yv[c] = load(y + c * ldy + t * L);
    for (int r = 0; r < RM; ++r)
      for (int c = 0; c < RN; ++c) s[r][c] = madd(xv[r], yv[c], s[r][c]);
  }
  for (int r = 0; r < RM; ++r)
    for (int c = 0; c < RN; ++c) acc[r * acc_ld + c] = s[r][c];
}

// acc[m·acc_ld + n] += X[m][0..np) ⊙ Y[n][0..np), summed over the vectors of the row
// (lane-wise); acc_ld defaults to N (a dense [M][N] block).
template <class T>
void panel_outer(int M, int N, const T* x, int64_t ldx, const T* y, int64_t ldy, int np,
                 Vec<T>* acc, int64_t acc_ld = 0) {
  const int tiles = np / kLanes<T>;
  const int64_t al = acc_ld > 0 ? acc_ld : N;
  int m = 0;
  for (; m + 4 <= M; m += 4) {
    int n = 0;
    for (; n + 4 <= N; n += 4)
      outer_tile<T, 4, 4>(tiles, x + m * ldx, ldx, y + n * ldy, ldy, acc + m * al + n, al);
    for (; n < N; ++n)
      outer_tile<T, 4, 1>(tiles, x + m * ldx, ldx, y + n * ldy, ldy, acc + m * al + n, al);
  }
  for (; m < M; ++m) {
    int n = 0;
    for (; n + 4 <= N; n += 4)
      outer_tile<T, 1, 4>(tiles, x + m * ldx, ldx, y + n * ldy, ldy, acc + m * al + n, al);
    for (; n < N; ++n)
      outer_tile<T, 1, 1>(tiles, x + m * ldx, ldx, y + n * ldy, ldy, acc + m * al + n, al);
  }
}

// acc[m] += X[m][0..np), lane-wise.
template <class T>
void panel_row_sums(int M, const T* x, int64_t ldx, int np, Vec<T>* acc) {
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < np; j += kLanes<T>) acc[m] += load(x + m * ldx + j);
}

// max_j x[j] for j < n (n >= 1); exact, so the order does not matter.
template <class T>
T row_max(const T* x, int n) {
  constexpr int L = kLanes<T>;
  T m = x[0];
  int j = 0;
  if (n >= L) {
    Vec<T> v = load(x);
    for (j = L; j + L <= n; j += L) {
      const Vec<T> next = load(x + j);
      v = next > v ? next : v;
    }
    for (int l = 0; l < L; ++l) m = v[l] > m ? v[l] : m;
  }
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// ---- activations over panels ------------------------------------------------------------------

// act = z > 0 ? z : negative_slope·z over `rows` rows of n (LeakyReLU; ReLU for slope 0).
// act may alias z.
template <class T>
void panel_activate(const T* z, T* act, int rows, int64_t ld, int n, T negative_slope) {
  for (int r = 0; r < rows; ++r) {
    const T* zr = z + r * ld;
    T* ar = act + r * ld;
#pragma omp simd
    for (int j = 0; j < n; ++j) ar[j] = zr[j] > T(0) ? zr[j] : negative_slope * zr[j];
  }
}

// d ⊙= (s > 0 ? 1 : negative_slope): the activation's derivative applied to a gradient, read off
// the sign of `s`, which may be the pre-activation or the activation itself (they share a sign).
template <class T>
void panel_activate_backward(T* d, const T* s, int rows, int64_t ld, int n, T negative_slope) {
  for (int r = 0; r < rows; ++r) {
    T* dr = d + r * ld;
    const T* sr = s + r * ld;
#pragma omp simd
    for (int j = 0; j < n; ++j) dr[j] *= sr[j] > T(0) ? T(1) : negative_slope;
  }
}

// ---- weighted sums of token rows --------------------------------------------------------------

// One chunk of V vectors of the head dimension, from element e, for R query rows.
template <class T, int R, int V>
inline void weighted_chunk(int n, const T* w, int64_t ldw, const T* rows, int64_t stride, int e,
                           T factor, T* dst, int64_t ld_dst) {
  constexpr int L = kLanes<T>;
  Vec<T> acc[R][V] = {};
  for (int j = 0; j < n; ++j) {
    Vec<T> v[V];
    for (int c = 0; c < V; ++c) v[c] = load(rows + j * stride + e + c * L);
    for (int r = 0; r < R; ++r) {
      const T wr = w[r * ldw + j];
      for (int c = 0; c < V; ++c) acc[r][c] = madd(wr, v[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < V; ++c) store(dst + r * ld_dst + e + c * L, factor * acc[r][c]);
}

template <class T, int R>
inline void weighted_rows_r(int n, const T* w, int64_t ldw, const T* rows, int64_t stride, int D,
                            T factor, T* dst, int64_t ld_dst) {
  constexpr int L = kLanes<T>;
  int e = 0;
  for (; e + 4 * L <= D; e += 4 * L)
    weighted_chunk<T, R, 4>(n, w, ldw, rows, stride, e, factor, dst, ld_dst);
  for (; e + 2 * L <= D; e += 2 * L)
    weighted_chunk<T, R, 2>(n, w, ldw, rows, stride, e, factor, dst, ld_dst);
  for (; e + L <= D; e += L)
    weighted_chunk<T, R, 1>(n, w, ldw, rows, stride, e, factor, dst, ld_dst);
  for (; e < D; ++e) {
    T acc[R] = {};
    for (int j = 0; j < n; ++j)
      for (int r = 0; r < R; ++r) acc[r] = madd(w[r * ldw + j], rows[j * stride + e], acc[r]);
    for (int r = 0; r < R; ++r) dst[r * ld_dst + e] = factor * acc[r];
  }
}

// dst[r·ld_dst + e] = factor · Σ_{j<n} w[r·ldw + j]·rows[j·stride + e] for r < R, e < D: P·V and
// dS·K for R query rows at once, reading each token row (of one head) once per four query rows.
// Every output is one running sum over j in order, so a row's result does not depend on R.
template <class T>
void weighted_row_sums(int R, int n, const T* w, int64_t ldw, const T* rows, int64_t stride, int D,
                       T factor, T* dst, int64_t ld_dst) {
  int r = 0;
  for (; r + 4 <= R; r += 4)
    weighted_rows_r<T, 4>(n, w + r * ldw, ldw, rows, stride, D, factor, dst + r * ld_dst, ld_dst);
  for (; r < R; ++r)
    weighted_rows_r<T, 1>(n, w + r * ldw, ldw, rows, stride, D, factor, dst + r * ld_dst, ld_dst);
}

// R output rows × V vectors of the head dimension from element e, accumulated in place.
template <class T, int R, int V>
inline void weighted_acc_chunk(int n, const T* w, int64_t w_row, int64_t w_term, const T* rows,
                               int64_t stride, int e, T factor, T* dst, int64_t ld_dst) {
  constexpr int L = kLanes<T>;
  Vec<T> acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < V; ++c) acc[r][c] = Vec<T>{};
  for (int j = 0; j < n; ++j) {
    Vec<T> v[V];
    for (int c = 0; c < V; ++c) v[c] = load(rows + j * stride + e + c * L);
    for (int r = 0; r < R; ++r) {
      const T wr = w[r * w_row + j * w_term];
      for (int c = 0; c < V; ++c) acc[r][c] = madd(wr, v[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < V; ++c) {
      T* d = dst + r * ld_dst + e + c * L;
      store(d, madd(factor, acc[r][c], load(d)));
    }
}

template <class T, int R>
inline void weighted_acc_rows(int n, const T* w, int64_t w_row, int64_t w_term, const T* rows,
                              int64_t stride, int D, T factor, T* dst, int64_t ld_dst) {
  constexpr int L = kLanes<T>;
  int e = 0;
  for (; e + 4 * L <= D; e += 4 * L)
    weighted_acc_chunk<T, R, 4>(n, w, w_row, w_term, rows, stride, e, factor, dst, ld_dst);
  for (; e + 2 * L <= D; e += 2 * L)
    weighted_acc_chunk<T, R, 2>(n, w, w_row, w_term, rows, stride, e, factor, dst, ld_dst);
  for (; e + L <= D; e += L)
    weighted_acc_chunk<T, R, 1>(n, w, w_row, w_term, rows, stride, e, factor, dst, ld_dst);
  for (; e < D; ++e) {
    T acc[R] = {};
    for (int j = 0; j < n; ++j)
      for (int r = 0; r < R; ++r)
        acc[r] = madd(w[r * w_row + j * w_term], rows[j * stride + e], acc[r]);
    for (int r = 0; r < R; ++r) dst[r * ld_dst + e] = madd(factor, acc[r], dst[r * ld_dst + e]);
  }
}

// dst[r·ld_dst + e] += factor · Σ_{j<n} w(r, j)·rows[j·stride + e] for r < R, e < D, with the
// weights read as w(r, j) = w[r·w_row + j·w_term], so a transposed weight matrix is a stride
// swap: P·V and dS·K (w_row = Bk, w_term = 1) and Pᵀ·dO, dSᵀ·Q (w_row = 1, w_term = Bk) alike.
// Each output is one running sum over j in order, added to dst once.
template <class T>
void weighted_row_sums_acc(int R, int n, const T* w, int64_t w_row, int64_t w_term, const T* rows,
                           int64_t stride, int D, T factor, T* dst, int64_t ld_dst) {
  constexpr int L = kLanes<T>;
  int r = 0;
  if (D <= 2 * L)  // few vectors per row: more rows per tile keep the FMA units busy
    for (; r + 8 <= R; r += 8)
      weighted_acc_rows<T, 8>(n, w + r * w_row, w_row, w_term, rows, stride, D, factor,
                              dst + r * ld_dst, ld_dst);
  for (; r + 4 <= R; r += 4)
    weighted_acc_rows<T, 4>(n, w + r * w_row, w_row, w_term, rows, stride, D, factor,
                            dst + r * ld_dst, ld_dst);
  for (; r < R; ++r)
    weighted_acc_rows<T, 1>(n, w + r * w_row, w_row, w_term, rows, stride, D, factor,
                            dst + r * ld_dst, ld_dst);
}

// ---- exp ------------------------------------------------------------------------------------

// e^x for float vectors: Cody–Waite reduction x = k·ln2 + r, a degree-6 polynomial for e^r
// (Cephes' expf, relative error below 2·10⁻⁷ on [−87, 88]) and the exponent added to the bits.
// Inputs below −87.3 give 0; the callers pass x ≤ ~0 (logits minus their maximum or the lse).
inline Vec<float> exp_vec(Vec<float> x) {
  typedef int32_t VI __attribute__((vector_size(kBytes)));
  const Vec<float> lo = splat(-87.3f), hi = splat(88.3f);
  const VI underflow = x < lo;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const Vec<float> fx = madd(x, splat(1.44269504088896341f), splat(0.5f));
  VI k = __builtin_convertvector(fx, VI);            // truncates toward zero ...
  k += __builtin_convertvector(k, Vec<float>) > fx;  // ... so step down where that rounded up
  const Vec<float> kf = __builtin_convertvector(k, Vec<float>);
  x = madd(kf, splat(-0.693359375f), x);  // x − k·ln2, ln2 in two parts
  x = madd(kf, splat(2.12194440e-4f), x);
  Vec<float> y = splat(1.9875691500e-4f);
  y = madd(y, x, splat(1.3981999507e-3f));
  y = madd(y, x, splat(8.3334519073e-3f));
  y = madd(y, x, splat(4.1665795894e-2f));
  y = madd(y, x, splat(1.6666665459e-1f));
  y = madd(y, x, splat(5.0000001201e-1f));
  y = madd(y, x * x, x) + 1.0f;
  const VI bits = (k + 127) << 23;
  Vec<float> scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const Vec<float> r = y * scale;
  return underflow ? Vec<float>{} : r;
}

// x[j] = e^(x[j] − shift) for j < n: vectorized for float, std::exp for double (the precision
// used for gradient checks).
inline void exp_shifted(float* x, int n, float shift) {
  constexpr int L = kLanes<float>;
  int j = 0;
  for (; j + L <= n; j += L) store(x + j, exp_vec(load(x + j) - shift));
  if (j < n) {
    float tail[L] = {};
    for (int t = j; t < n; ++t) tail[t - j] = x[t];
    const Vec<float> e = exp_vec(load(tail) - shift);
    for (int t = j; t < n; ++t) x[t] = e[t - j];
  }
}
inline void exp_shifted(double* x, int n, double shift) {
  for (int j = 0; j < n; ++j) x[j] = std::exp(x[j] - shift);
}

// exp_shifted, returning Σ_j of the results as well (lane-wise partial sums, then the lanes and
// the tail in order: the sum depends on the inputs only).
inline float exp_shifted_sum(float* x, int n, float shift) {
  constexpr int L = kLanes<float>;
  Vec<float> acc{};
  int j = 0;
  for (; j + L <= n; j += L) {
    const Vec<float> e = exp_vec(load(x + j) - shift);
    store(x + j, e);
    acc += e;
  }
  float s = lane_sum<float>(acc);
  if (j < n) {
    exp_shifted(x + j, n - j, shift);
    for (; j < n; ++j) s += x[j];
  }
  return s;
}
inline double exp_shifted_sum(double* x, int n, double shift) {
  double s = 0;
  for (int j = 0; j < n; ++j) {
    x[j] = std::exp(x[j] - shift);
    s += x[j];
  }
  return s;
}

}  // namespace dape::cpu::simd
