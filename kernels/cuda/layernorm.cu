/*
 * LayerNorm over the last dimension (eps 1e-5), forward and backward, with the CPU kernel's
 * arithmetic: every per-row quantity in double.
 *
 * Forward: one block per row. Three sweeps over the row (sum → mean, Σ(x − mean)² → the biased
 * variance as PyTorch, then the output), each sum reduced in a fixed tree; the row (C floats) is
 * re-read from L1/L2 between sweeps. The statistics and the normalized output are computed in
 * double from the double mean and 1/std, then rounded once, so the output agrees with the CPU's
 * to within the final float rounding. mean and rstd are stored as float and backward reads them
 * back, as the CPU does.
 *
 * Backward, with x̂ = (x − mean)·rstd and g = dout ⊙ w:
 *   dx += rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂))      one block per row, two block sums;
 *   dw += Σ_rows dout ⊙ x̂,  db += Σ_rows dout           a fixed-order column reduction
 *                                                        (column_reduce.cuh) recomputing x̂.
 * Splitting dw/db from dx reads x and dout twice, in exchange for no atomics and no per-block
 * [C]-sized accumulators: the reduction order is fixed by the shape, so the gradients are
 * reproducible bit for bit. The kernels are memory bound, so the double arithmetic should hide
 * behind the loads (not yet measured on a GPU).
 */
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/layernorm.h"  // kLayerNormEps, shared with the CPU kernel
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/column_reduce.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/index_math.h"
#include "kernels/cuda/launch.h"

namespace dape::cuda {
namespace {

constexpr double kEps = cpu::kLayerNormEps;

int row_blocks(int64_t rows) {
  return static_cast<int>(rows < kMaxRowBlocks ? rows : kMaxRowBlocks);
}

__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* x,
                                         const float* w, const float* b, int64_t rows, int64_t C) {
  __shared__ double scratch[32];
  const double inv_c = 1.0 / static_cast<double>(C);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * C;
    double sum = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) sum += static_cast<double>(xr[i]);
    const double mu = block_sum(sum, scratch) * inv_c;
    double sq = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
      const double d = static_cast<double>(xr[i]) - mu;
      sq += d * d;
    }
    const double rs = 1.0 / sqrt(block_sum(sq, scratch) * inv_c + kEps);
    float* yr = out + r * C;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
      const double xhat = (static_cast<double>(xr[i]) - mu) * rs;
      yr[i] = static_cast<float>(xhat * static_cast<double>(w[i]) + static_cast<double>(b[i]));
    }
    if (threadIdx.x == 0) {
      mean[r] = static_cast<float>(mu);
      rstd[r] = static_cast<float>(rs);
    }
  }
}

__global__ void layernorm_backward_dx_kernel(float* dx, const float* dout, const float* x,
                                             const float* w, const float* mean, const float* rstd,
                                             int64_t rows, int64_t C) {
  __shared__ double scratch[32];
  const double inv_c = 1.0 / static_cast<double>(C);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * C;
    const float* gr = dout + r * C;
    const double mu = mean[r], rs = rstd[r];
    double sum_g = 0, sum_g_xhat = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
      const double xhat = (static_cast<double>(xr[i]) - mu) * rs;
      const double g = static_cast<double>(gr[i]) * static_cast<double>(w[i]);
      sum_g += g;
      sum_g_xhat += g * xhat;
    }
    const double mean_g = block_sum(sum_g, scratch) * inv_c;
    const double mean_g_xhat = block_sum(sum_g_xhat, scratch) * inv_c;
    float* dxr = dx + r * C;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
      const double xhat = (static_cast<double>(xr[i]) - mu) * rs;
      const double g = static_cast<double>(gr[i]) * static_cast<double>(w[i]);
      dxr[i] =
          static_cast<float>(static_cast<double>(dxr[i]) + rs * (g - mean_g - xhat * mean_g_xhat));
    }
  }
}

// acc[0] += dout · x̂ (for dw), acc[1] += dout (for db).
struct LayerNormParamGrads {
  const float* dout;
  const float* x;
  const float* mean;
  const float* rstd;
  int64_t C;
  __device__ void operator()(int64_t r, int64_t c, double* acc) const {
    const double go = dout[r * C + c];
    const double xhat =
        (static_cast<double>(x[r * C + c]) - static_cast<double>(mean[r])) * rstd[r];
    acc[0] += go * xhat;
    acc[1] += go;
  }
};

}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t rows, int64_t C, cudaStream_t stream) {
  if (rows <= 0 || C <= 0) return;
  layernorm_forward_kernel<<<row_blocks(rows), kBlockThreads, 0, stream>>>(out, mean, rstd, x, w, b,
                                                                           rows, C);
  DAPE_CUDA_LAUNCHED("layernorm_forward_kernel");
}

int64_t layernorm_backward_workspace(int64_t rows, int64_t C) {
  return floats_for_doubles(2 * row_chunks(rows).count * C);
}

void layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x,
                        const float* w, const float* mean, const float* rstd, int64_t rows,
                        int64_t C, float* workspace, cudaStream_t stream) {
  if (rows <= 0 || C <= 0) return;
  // dw and db first: they read dout, so dx may even alias it (as on the CPU, where each row's dx
  // is written after that row's dout was read).
  const RowChunks chunks = row_chunks(rows);
  double* partial = double_workspace(workspace);
  const dim3 grid(static_cast<unsigned>(ceil_div(C, kBlockThreads)),
                  static_cast<unsigned>(chunks.count));
  column_partials_kernel<2><<<grid, kBlockThreads, 0, stream>>>(
      partial, rows, C, chunks.rows_per_chunk, LayerNormParamGrads{dout, x, mean, rstd, C});
  DAPE_CUDA_LAUNCHED("column_partials_kernel (layernorm dw, db)");
  column_finish_kernel<2>
      <<<grid_blocks(C, kBlockThreads, kMaxGridStrideBlocks), kBlockThreads, 0, stream>>>(
          ColumnOutputs<2>{{dw, db}}, partial, chunks.count, C);
  DAPE_CUDA_LAUNCHED("column_finish_kernel (layernorm dw, db)");

  layernorm_backward_dx_kernel<<<row_blocks(rows), kBlockThreads, 0, stream>>>(dx, dout, x, w, mean,
                                                                               rstd, rows, C);
  DAPE_CUDA_LAUNCHED("layernorm_backward_dx_kernel");
}

}  // namespace dape::cuda
