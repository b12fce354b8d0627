/*
 * LayerNorm, one row per OpenMP iteration, every per-row quantity in double.
 *
 * Forward: two passes over the row (mean, then the biased variance Σ(x − mean)²/C, as PyTorch),
 * then the normalized output computed from the double statistics. mean and rstd are stored in
 * the backend's type; backward reads them back from there, so forward and backward see the
 * same statistics up to that one rounding.
 *
 * Backward, with x̂ = (x − mean)·rstd and g = dout ⊙ w:
 *   dx += rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)),   dw += Σ_rows dout ⊙ x̂,   db += Σ_rows dout.
 * dw and db are reduced over fixed blocks of kRowBlock rows into per-block partial sums, which
 * are then added in block order: the result is the same for any thread count. The cost is a
 * (rows / kRowBlock) × 2C buffer of doubles, 0.4 MB at 2048 × 768.
 */
#include "kernels/cpu/layernorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dape::cpu {
namespace {

constexpr int64_t kRowBlock = 64;

bool parallel_worth_it(int64_t rows, int64_t C) {
  return rows > 1 && rows * C >= (1 << 14);
}

}  // namespace

template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t rows,
                       int64_t C) {
  const double inv_c = 1.0 / static_cast<double>(C);
#pragma omp parallel for schedule(static) if (parallel_worth_it(rows, C))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    T* yr = out + r * C;
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < C; ++i) sum += static_cast<double>(xr[i]);
    const double mu = sum * inv_c;
    double sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int64_t i = 0; i < C; ++i) {
      const double d = static_cast<double>(xr[i]) - mu;
      sq += d * d;
    }
    const double rs = 1.0 / std::sqrt(sq * inv_c + kLayerNormEps);
#pragma omp simd
    for (int64_t i = 0; i < C; ++i) {
      const double xhat = (static_cast<double>(xr[i]) - mu) * rs;
      yr[i] = static_cast<T>(xhat * static_cast<double>(w[i]) + static_cast<double>(b[i]));
    }
    mean[r] = static_cast<T>(mu);
    rstd[r] = static_cast<T>(rs);
  }
}

template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dout, const T* x, const T* w, const T* mean,
                        const T* rstd, int64_t rows, int64_t C) {
  const double inv_c = 1.0 / static_cast<double>(C);
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  // Per block: C partial sums for dw, then C for db.
  std::vector<double> partial(blocks * 2 * C, 0.0);
#pragma omp parallel for schedule(static) if (parallel_worth_it(rows, C))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    double* pdw = partial.data() + blk * 2 * C;
    double* pdb = pdw + C;
    const int64_t r_end = std::min(rows, (blk + 1) * kRowBlock);
    for (int64_t r = blk * kRowBlock; r < r_end; ++r) {
      const T* xr = x + r * C;
      const T* gr = dout + r * C;
      T* dxr = dx + r * C;
      const double mu = mean[r], rs = rstd[r];
      double sum_g = 0, sum_g_xhat = 0;
#pragma omp simd reduction(+ : sum_g, sum_g_xhat)
      for (int64_t i = 0; i < C; ++i) {
        const double xhat = (static_cast<double>(xr[i]) - mu) * rs;
        const double go = gr[i];
        const double g = go * static_cast<double>(w[i]);
        sum_g += g;
        sum_g_xhat += g * xhat;
        pdw[i] += go * xhat;
        pdb[i] += go;
      }
      const double mean_g = sum_g * inv_c, mean_g_xhat = sum_g_xhat * inv_c;
#pragma omp simd
      for (int64_t i = 0; i < C; ++i) {
        const double xhat = (static_cast<double>(xr[i]) - mu) * rs;
        const double g = static_cast<double>(gr[i]) * static_cast<double>(w[i]);
        dxr[i] =
            static_cast<T>(static_cast<double>(dxr[i]) + rs * (g - mean_g - xhat * mean_g_xhat));
      }
    }
  }
#pragma omp parallel for schedule(static) if (parallel_worth_it(blocks, C))
  for (int64_t i = 0; i < C; ++i) {
    double sw = 0, sb = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      sw += partial[blk * 2 * C + i];
      sb += partial[blk * 2 * C + C + i];
    }
    dw[i] = static_cast<T>(static_cast<double>(dw[i]) + sw);
    db[i] = static_cast<T>(static_cast<double>(db[i]) + sb);
  }
}

#define DAPE_INSTANTIATE_LAYERNORM(T)                                                             \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t); \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,         \
                                      const T*, int64_t, int64_t);
DAPE_INSTANTIATE_LAYERNORM(float)
DAPE_INSTANTIATE_LAYERNORM(double)
#undef DAPE_INSTANTIATE_LAYERNORM

}  // namespace dape::cpu
