/*
 * gemm: float to oneDNN's row-major sgemm, double to a cache-blocked loop.
 *
 * The double loop serves gradient checks on tiny models, so it aims at "obviously correct and
 * not painfully slow" (a few GFLOP/s), not at peak: a transposed operand is first packed into
 * row-major order, then C is cut into tiles of kTileRows × kTileCols whose accumulators live in
 * a small local array while k runs over the whole inner dimension; the innermost loop runs
 * along a row of B and vectorizes. Each element of C is summed over k in ascending order by one
 * thread, so the double result does not depend on the thread count. oneDNN's float result is
 * deterministic for a fixed thread count (it may split K differently for other counts).
 *
 * BLAS conventions: beta == 0 means C is not read (NaN or garbage there is overwritten); K == 0
 * gives C = beta · C.
 */
#include "kernels/cpu/gemm.h"

#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/check.h"

namespace dape::cpu {
namespace {

constexpr int64_t kTileRows = 4;
constexpr int64_t kTileCols = 256;

// C = beta · C over an M × N block (beta == 0 writes zeros without reading C).
template <class T>
void scale_output(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
#pragma omp parallel for schedule(static) if (M * N >= (int64_t{1} << 15))
  for (int64_t i = 0; i < M; ++i) {
    T* row = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) row[j] = beta == T(0) ? T(0) : beta * row[j];
  }
}

// dst [rows, cols] (row-major, dense) = transpose of src [cols, rows] with leading dim ld.
template <class T>
void pack_transposed(T* dst, const T* src, int64_t rows, int64_t cols, int64_t ld) {
#pragma omp parallel for schedule(static) if (rows * cols >= (int64_t{1} << 15))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = src[c * ld + r];
}

template <class T>
void blocked_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                  int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  // Row-major views of op(A) [M, K] and op(B) [K, N].
  std::vector<T> packed_a, packed_b;
  const T* a = A;
  const T* b = B;
  int64_t a_ld = lda, b_ld = ldb;
  if (trans_a) {
    packed_a.resize(M * K);
    pack_transposed(packed_a.data(), A, M, K, lda);
    a = packed_a.data();
    a_ld = K;
  }
  if (trans_b) {
    packed_b.resize(K * N);
    pack_transposed(packed_b.data(), B, K, N, ldb);
    b = packed_b.data();
    b_ld = N;
  }

  const int64_t row_tiles = (M + kTileRows - 1) / kTileRows;
  const int64_t col_tiles = (N + kTileCols - 1) / kTileCols;
  // Tiles of one column block are consecutive, so a thread's static share reuses one panel
  // of B across its row tiles.
#pragma omp parallel for schedule(static) if (M * N * K >= (int64_t{1} << 18))
  for (int64_t tile = 0; tile < row_tiles * col_tiles; ++tile) {
    const int64_t i0 = (tile % row_tiles) * kTileRows, j0 = (tile / row_tiles) * kTileCols;
    const int64_t rows = std::min(kTileRows, M - i0), cols = std::min(kTileCols, N - j0);
    T acc[kTileRows][kTileCols] = {};
    for (int64_t k = 0; k < K; ++k) {
      const T* b_row = b + k * b_ld + j0;
      for (int64_t r = 0; r < rows; ++r) {
        const T a_rk = a[(i0 + r) * a_ld + k];
        T* acc_r = acc[r];
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) acc_r[j] += a_rk * b_row[j];
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      T* c_row = C + (i0 + r) * ldc + j0;
      if (beta == T(0)) {
        for (int64_t j = 0; j < cols; ++j) c_row[j] = alpha * acc[r][j];
      } else {
        for (int64_t j = 0; j < cols; ++j) c_row[j] = alpha * acc[r][j] + beta * c_row[j];
      }
    }
  }
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  DAPE_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: negative size M={} N={} K={}", M, N, K);
  DAPE_CHECK(lda >= std::max<int64_t>(1, trans_a ? M : K) &&
                 ldb >= std::max<int64_t>(1, trans_b ? K : N) && ldc >= std::max<int64_t>(1, N),
             "gemm: leading dimensions lda={} ldb={} ldc={} too small for M={} N={} K={} "
             "(trans_a={}, trans_b={})",
             lda, ldb, ldc, M, N, K, trans_a, trans_b);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    scale_output(M, N, beta, C, ldc);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    const dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K,
                                            alpha, A, lda, B, ldb, beta, C, ldc);
    DAPE_CHECK(status == dnnl_success, "dnnl_sgemm failed with status {} (M={} N={} K={})",
               static_cast<int>(status), M, N, K);
  } else {
    blocked_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace dape::cpu
