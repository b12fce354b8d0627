/*
 * Exact GELU, forward and backward, elementwise over chunks of four floats (chunked_loop.cuh).
 *
 *   gelu(x)  = x · Φ(x)
 *   gelu'(x) = Φ(x) + x · φ(x),   φ(x) = exp(−x²/2) / √(2π)
 *
 * Φ is CUDA's normcdff (a few ulp over the whole range, and accurate in the lower tail, where
 * ½·(1 + erf(x/√2)) would cancel), the function the CPU's vec_normal_cdf approximates to the
 * same few ulp; φ uses expf (2 ulp). No tanh approximation: the model trains with the exact
 * form on every backend. The kernels are memory bound; the erfc inside normcdff is not the
 * limit. dx may alias dout (each thread reads a chunk before writing it).
 */
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/chunked_loop.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/index_math.h"
#include "kernels/cuda/launch.h"

namespace dape::cuda {
namespace {

constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

__device__ inline float gelu(float x) {
  return x * normcdff(x);
}

__device__ inline float gelu_grad(float x, float dout) {
  const float pdf = kInvSqrt2Pi * expf(-0.5f * x * x);
  return dout * (normcdff(x) + x * pdf);
}

__global__ void gelu_forward_kernel(float* out, const float* x, int64_t n, bool vec) {
  const int64_t chunks = chunks_of_4(n);
  for (int64_t c = grid_thread_index(); c < chunks; c += grid_thread_count()) {
    const float4 v = load4(x, 4 * c, n, vec);
    store4(out, 4 * c, n, vec, make_float4(gelu(v.x), gelu(v.y), gelu(v.z), gelu(v.w)));
  }
}

__global__ void gelu_backward_kernel(float* dx, const float* x, const float* dout, int64_t n,
                                     bool vec) {
  const int64_t chunks = chunks_of_4(n);
  for (int64_t c = grid_thread_index(); c < chunks; c += grid_thread_count()) {
    const float4 v = load4(x, 4 * c, n, vec), g = load4(dout, 4 * c, n, vec);
    store4(dx, 4 * c, n, vec,
           make_float4(gelu_grad(v.x, g.x), gelu_grad(v.y, g.y), gelu_grad(v.z, g.z),
                       gelu_grad(v.w, g.w)));
  }
}

int chunk_blocks(int64_t n) {
  return grid_blocks(chunks_of_4(n), kBlockThreads, kMaxGridStrideBlocks);
}

}  // namespace

void gelu_forward(float* out, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vec = aligned16(out) && aligned16(x);
  gelu_forward_kernel<<<chunk_blocks(n), kBlockThreads, 0, stream>>>(out, x, n, vec);
  DAPE_CUDA_LAUNCHED("gelu_forward_kernel");
}

void gelu_backward(float* dx, const float* x, const float* dout, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vec = aligned16(dx) && aligned16(x) && aligned16(dout);
  gelu_backward_kernel<<<chunk_blocks(n), kBlockThreads, 0, stream>>>(dx, x, dout, n, vec);
  DAPE_CUDA_LAUNCHED("gelu_backward_kernel");
}

}  // namespace dape::cuda
