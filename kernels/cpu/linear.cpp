/*
 * Linear layers as three GEMMs (forward x·Wᵀ, backward dout·W and doutᵀ·x) plus bias loops.
 *
 * The bias gradient is a column sum of dout. It is parallel over blocks of kBiasCols columns:
 * each column is summed over rows in row order by one thread, in double for float inputs, so the
 * result is the same for any thread count and no partial-sum buffer is needed. The bias add
 * in forward is a row-parallel pass over the GEMM output.
 */
#include "kernels/cpu/linear.h"

#include <algorithm>

#include "kernels/cpu/gemm.h"

namespace dape::cpu {
namespace {

// Columns per block of the bias gradient: 64 doubles of accumulator, and a row segment of whole
// cache lines in float and double.
constexpr int64_t kBiasCols = 64;

// db [N] += Σ_rows dout [M, N].
template <class T>
void bias_backward(T* db, const T* dout, int64_t M, int64_t N) {
  const int64_t blocks = (N + kBiasCols - 1) / kBiasCols;
#pragma omp parallel for schedule(static) if (M * N >= (int64_t{1} << 15))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t j0 = blk * kBiasCols, cols = std::min(kBiasCols, N - j0);
    double acc[kBiasCols] = {};
    for (int64_t r = 0; r < M; ++r) {
      const T* row = dout + r * N + j0;
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) acc[j] += static_cast<double>(row[j]);
    }
    for (int64_t j = 0; j < cols; ++j) db[j0 + j] = static_cast<T>(db[j0 + j] + acc[j]);
  }
}

}  // namespace

template <class T>
void linear_forward(T* out, const T* x, const T* w, const T* b, int64_t M, int64_t N, int64_t K) {
  gemm<T>(false, true, M, N, K, T(1), x, K, w, K, T(0), out, N);
  if (b == nullptr) return;
#pragma omp parallel for schedule(static) if (M * N >= (int64_t{1} << 15))
  for (int64_t r = 0; r < M; ++r) {
    T* row = out + r * N;
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) row[j] += b[j];
  }
}

template <class T>
void linear_backward(T* dx, T* dw, T* db, const T* dout, const T* x, const T* w, int64_t M,
                     int64_t N, int64_t K, bool accumulate_dx) {
  // dx [M, K] = dout [M, N] · w [N, K]
  if (dx != nullptr) gemm<T>(false, false, M, K, N, T(1), dout, N, w, K, T(accumulate_dx), dx, K);
  // dw [N, K] += dout [M, N]ᵀ · x [M, K]
  gemm<T>(true, false, N, K, M, T(1), dout, N, x, K, T(1), dw, K);
  if (db != nullptr) bias_backward(db, dout, M, N);
}

#define DAPE_INSTANTIATE_LINEAR(T)                                                              \
  template void linear_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t); \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t,  \
                                   int64_t, bool);
DAPE_INSTANTIATE_LINEAR(float)
DAPE_INSTANTIATE_LINEAR(double)
#undef DAPE_INSTANTIATE_LINEAR

}  // namespace dape::cpu
