/*
 * db += Σ over rows of dout [rows, cols]: the bias gradient of a linear layer where no cuBLASLt
 * epilogue gives it. A fixed-order two-kernel column reduction in double (column_reduce.cuh), so
 * the result is reproducible bit for bit and matches the CPU's double sums to double rounding.
 * The workspace holds the per-chunk partials: rows / 16 (at least 1, at most 256) doubles per
 * column.
 */
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/column_reduce.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/index_math.h"
#include "kernels/cuda/launch.h"

namespace dape::cuda {
namespace {

struct ColumnValue {
  const float* dout;
  int64_t cols;
  __device__ void operator()(int64_t r, int64_t c, double* acc) const {
    acc[0] += static_cast<double>(dout[r * cols + c]);
  }
};

}  // namespace

int64_t column_sum_workspace(int64_t rows, int64_t cols) {
  return floats_for_doubles(row_chunks(rows).count * cols);
}

void column_sum_accumulate(float* db, const float* dout, int64_t rows, int64_t cols,
                           float* workspace, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const RowChunks chunks = row_chunks(rows);
  double* partial = double_workspace(workspace);
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, kBlockThreads)),
                  static_cast<unsigned>(chunks.count));
  column_partials_kernel<1><<<grid, kBlockThreads, 0, stream>>>(
      partial, rows, cols, chunks.rows_per_chunk, ColumnValue{dout, cols});
  DAPE_CUDA_LAUNCHED("column_partials_kernel (column sum)");
  column_finish_kernel<1>
      <<<grid_blocks(cols, kBlockThreads, kMaxGridStrideBlocks), kBlockThreads, 0, stream>>>(
          ColumnOutputs<1>{{db}}, partial, chunks.count, cols);
  DAPE_CUDA_LAUNCHED("column_finish_kernel (column sum)");
}

}  // namespace dape::cuda
