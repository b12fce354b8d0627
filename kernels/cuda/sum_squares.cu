/*
 * Σ x² over a float tensor, accumulated in double in a fixed order (the gradient-norm clip's
 * input): the CPU backend's contract, so that the same gradients give the same clip factor up to
 * double rounding on either backend.
 *
 * Two kernels, no atomics. The first runs a grid whose size is a function of n alone
 * (sum_squares_workspace), each thread summing its chunks of four elements in order into a
 * double, each block reducing its threads in a fixed tree (block_reduce.cuh) into one partial in
 * the workspace. The second, one block, adds the partials in a fixed tree and writes the result
 * to device memory, where the caller reads it with its next copy to the host. Same n, same
 * order: the result is bitwise reproducible, whatever the alignment of x (the float4 path moves
 * the same chunks). The conversion to double per element should hide behind the memory traffic.
 */
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/chunked_loop.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/index_math.h"
#include "kernels/cuda/launch.h"

namespace dape::cuda {
namespace {

// Partial sums: enough blocks to stream at full bandwidth, few enough that one block adds them.
constexpr int kSumSquaresMaxBlocks = 1024;

int sum_squares_blocks(int64_t n) {
  return grid_blocks(chunks_of_4(n), kBlockThreads, kSumSquaresMaxBlocks);
}

__device__ inline double square(float x) {
  const double d = static_cast<double>(x);
  return d * d;
}

__global__ void sum_squares_partial_kernel(double* partial, const float* x, int64_t n, bool vec) {
  __shared__ double scratch[32];
  double s = 0;
  const int64_t chunks = chunks_of_4(n);
  for (int64_t c = grid_thread_index(); c < chunks; c += grid_thread_count()) {
    const float4 v = load4(x, 4 * c, n, vec);  // zeros past n add nothing
    s += square(v.x);
    s += square(v.y);
    s += square(v.z);
    s += square(v.w);
  }
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_squares_final_kernel(double* result, const double* partial, int count) {
  __shared__ double scratch[32];
  double s = 0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) *result = s;
}

}  // namespace

int64_t sum_squares_workspace(int64_t n) {
  return sum_squares_blocks(n);
}

void sum_squares(const float* x, int64_t n, double* workspace, double* result,
                 cudaStream_t stream) {
  int blocks = 0;  // n == 0: the final kernel adds no partials and writes 0
  if (n > 0) {
    blocks = sum_squares_blocks(n);
    sum_squares_partial_kernel<<<blocks, kBlockThreads, 0, stream>>>(workspace, x, n, aligned16(x));
    DAPE_CUDA_LAUNCHED("sum_squares_partial_kernel");
  }
  sum_squares_final_kernel<<<1, kBlockThreads, 0, stream>>>(result, workspace, blocks);
  DAPE_CUDA_LAUNCHED("sum_squares_final_kernel");
}

}  // namespace dape::cuda
