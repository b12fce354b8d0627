/*
 * Fixed-order sums over the rows of a [rows, cols] matrix, per column, added into float outputs:
 * the bias gradient (column_sum.cu) and LayerNorm's weight and bias gradients (layernorm.cu).
 *
 * Two kernels, no atomics. The rows are cut into consecutive chunks (row_chunks() in
 * index_math.h, a function of the row count alone). column_partials_kernel gives each
 * (column, chunk) one thread, which walks the chunk's rows in order accumulating in double; the
 * threads of a warp take consecutive columns, so each row step reads 32 consecutive floats.
 * column_finish_kernel then adds, per column, the chunks' partials in chunk order and adds the
 * total to the output once (out = float(out + total), as the CPU does). The same shape gives the
 * same bits on every run; the CPU sums in double too (in blocks of a different size), so the
 * two agree to double rounding before the final float rounding.
 *
 * What is summed is a functor: value(r, c, acc) adds its Q quantities for element (r, c) into
 * acc[0..Q). Partials are laid out [Q][chunks][cols] in a double workspace.
 */
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/chunked_loop.cuh"
#include "kernels/cuda/index_math.h"

namespace dape::cuda {

// The double partials in a float workspace of floats_for_doubles(n) floats (index_math.h): its
// start rounded up to 8 bytes.
inline double* double_workspace(float* workspace) {
  return reinterpret_cast<double*>(align_up(reinterpret_cast<uintptr_t>(workspace), 8));
}

// grid (ceil(cols / blockDim.x), chunks); chunk k holds rows [k · rows_per_chunk, ...).
template <int Q, class Value>
__global__ void column_partials_kernel(double* partial, int64_t rows, int64_t cols,
                                       int64_t rows_per_chunk, Value value) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const int64_t chunk = blockIdx.y, chunks = gridDim.y;
  const int64_t r0 = chunk * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  double acc[Q];
  for (int q = 0; q < Q; ++q) acc[q] = 0;
  for (int64_t r = r0; r < r1; ++r) value(r, c, acc);
  for (int q = 0; q < Q; ++q) partial[(q * chunks + chunk) * cols + c] = acc[q];
}

template <int Q>
struct ColumnOutputs {
  float* out[Q];
};

template <int Q>
__global__ void column_finish_kernel(ColumnOutputs<Q> outputs, const double* partial,
                                     int64_t chunks, int64_t cols) {
  for (int64_t c = grid_thread_index(); c < cols; c += grid_thread_count()) {
    for (int q = 0; q < Q; ++q) {
      double s = 0;
      for (int64_t k = 0; k < chunks; ++k) s += partial[(q * chunks + k) * cols + c];
      float* o = outputs.out[q] + c;
      *o = static_cast<float>(static_cast<double>(*o) + s);
    }
  }
}

}  // namespace dape::cuda
