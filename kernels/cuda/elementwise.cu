/*
 * Elementwise kernels on float32 device memory: fill, scale, add, clamp_min, and the conversions
 * between float and double used for host data staged on the device.
 *
 * Each is a grid-stride loop over chunks of four elements (chunked_loop.cuh), moved as float4
 * when the pointers allow: these kernels are pure memory traffic, and 16-byte transactions keep
 * the number of load/store instructions a quarter of the scalar loop's. The grid is capped at
 * kMaxGridStrideBlocks blocks (each thread loops over several chunks), which fills the GPU for
 * any tensor worth a launch and avoids grid-size limits for huge ones.
 *
 * add's output may alias either input: each thread reads a chunk before writing the same chunk.
 * clamp_min is written as a select so that a NaN stays NaN, as on the CPU. The conversions are
 * scalar: they move host uploads, not training traffic.
 */
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/chunked_loop.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/index_math.h"
#include "kernels/cuda/launch.h"

namespace dape::cuda {
namespace {

int chunk_blocks(int64_t n) {
  return grid_blocks(chunks_of_4(n), kBlockThreads, kMaxGridStrideBlocks);
}

__global__ void fill_kernel(float* x, int64_t n, float value, bool vec) {
  const float4 v = make_float4(value, value, value, value);
  const int64_t chunks = chunks_of_4(n);
  for (int64_t c = grid_thread_index(); c < chunks; c += grid_thread_count())
    store4(x, 4 * c, n, vec, v);
}

__global__ void scale_kernel(float* x, int64_t n, float factor, bool vec) {
  const int64_t chunks = chunks_of_4(n);
  for (int64_t c = grid_thread_index(); c < chunks; c += grid_thread_count()) {
    float4 v = load4(x, 4 * c, n, vec);
    v.x *= factor;
    v.y *= factor;
    v.z *= factor;
    v.w *= factor;
    store4(x, 4 * c, n, vec, v);
  }
}

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n, bool vec) {
  const int64_t chunks = chunks_of_4(n);
  for (int64_t c = grid_thread_index(); c < chunks; c += grid_thread_count()) {
    const float4 va = load4(a, 4 * c, n, vec), vb = load4(b, 4 * c, n, vec);
    store4(out, 4 * c, n, vec, make_float4(va.x + vb.x, va.y + vb.y, va.z + vb.z, va.w + vb.w));
  }
}

__device__ inline float at_least(float x, float lo) {
  return x < lo ? lo : x;
}

__global__ void clamp_min_kernel(float* x, int64_t n, float lo, bool vec) {
  const int64_t chunks = chunks_of_4(n);
  for (int64_t c = grid_thread_index(); c < chunks; c += grid_thread_count()) {
    const float4 v = load4(x, 4 * c, n, vec);
    store4(x, 4 * c, n, vec,
           make_float4(at_least(v.x, lo), at_least(v.y, lo), at_least(v.z, lo), at_least(v.w, lo)));
  }
}

__global__ void f64_to_f32_kernel(float* dst, const double* src, int64_t n) {
  for (int64_t i = grid_thread_index(); i < n; i += grid_thread_count())
    dst[i] = static_cast<float>(src[i]);
}

__global__ void f32_to_f64_kernel(double* dst, const float* src, int64_t n) {
  for (int64_t i = grid_thread_index(); i < n; i += grid_thread_count())
    dst[i] = static_cast<double>(src[i]);
}

}  // namespace

void fill(float* x, int64_t n, float value, cudaStream_t stream) {
  if (n <= 0) return;
  fill_kernel<<<chunk_blocks(n), kBlockThreads, 0, stream>>>(x, n, value, aligned16(x));
  DAPE_CUDA_LAUNCHED("fill_kernel");
}

void scale(float* x, int64_t n, float factor, cudaStream_t stream) {
  if (n <= 0) return;
  scale_kernel<<<chunk_blocks(n), kBlockThreads, 0, stream>>>(x, n, factor, aligned16(x));
  DAPE_CUDA_LAUNCHED("scale_kernel");
}

void add(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vec = aligned16(out) && aligned16(a) && aligned16(b);
  add_kernel<<<chunk_blocks(n), kBlockThreads, 0, stream>>>(out, a, b, n, vec);
  DAPE_CUDA_LAUNCHED("add_kernel");
}

void clamp_min(float* x, int64_t n, float lo, cudaStream_t stream) {
  if (n <= 0) return;
  clamp_min_kernel<<<chunk_blocks(n), kBlockThreads, 0, stream>>>(x, n, lo, aligned16(x));
  DAPE_CUDA_LAUNCHED("clamp_min_kernel");
}

void f64_to_f32(float* dst, const double* src, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const int blocks = grid_blocks(n, kBlockThreads, kMaxGridStrideBlocks);
  f64_to_f32_kernel<<<blocks, kBlockThreads, 0, stream>>>(dst, src, n);
  DAPE_CUDA_LAUNCHED("f64_to_f32_kernel");
}

void f32_to_f64(double* dst, const float* src, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const int blocks = grid_blocks(n, kBlockThreads, kMaxGridStrideBlocks);
  f32_to_f64_kernel<<<blocks, kBlockThreads, 0, stream>>>(dst, src, n);
  DAPE_CUDA_LAUNCHED("f32_to_f64_kernel");
}

}  // namespace dape::cuda
