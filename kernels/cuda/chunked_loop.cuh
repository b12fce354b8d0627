/*
 * The loop shape of the elementwise kernels: a grid-stride loop over chunks of four consecutive
 * floats, each moved as one float4 (a 16-byte transaction) when the launcher found every pointer
 * involved 16-byte aligned, else element by element. A partial last chunk always goes element by
 * element with bounds, so any length and any alignment work, and the vector path only moves the
 * same elements faster: which thread handles which element, and the order of any arithmetic,
 * do not depend on alignment. Indices are 64-bit.
 */
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dape::cuda {

// This thread's index in the grid, and the grid's thread count.
__device__ inline int64_t grid_thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline int64_t grid_thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

inline bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Elements [i, i + 4) of p (i a multiple of 4; vec: p is 16-byte aligned); those at or past n
// read as 0.
__device__ inline float4 load4(const float* p, int64_t i, int64_t n, bool vec) {
  if (vec && i + 4 <= n) return *reinterpret_cast<const float4*>(p + i);
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (i < n) v.x = p[i];
  if (i + 1 < n) v.y = p[i + 1];
  if (i + 2 < n) v.z = p[i + 2];
  if (i + 3 < n) v.w = p[i + 3];
  return v;
}

// Stores the elements of v that fall before n at p[i], p[i + 1], ...
__device__ inline void store4(float* p, int64_t i, int64_t n, bool vec, float4 v) {
  if (vec && i + 4 <= n) {
    *reinterpret_cast<float4*>(p + i) = v;
    return;
  }
  if (i < n) p[i] = v.x;
  if (i + 1 < n) p[i + 1] = v.y;
  if (i + 2 < n) p[i + 2] = v.z;
  if (i + 3 < n) p[i + 3] = v.w;
}

}  // namespace dape::cuda
