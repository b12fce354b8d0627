/*
 * Sums and maxima over a warp and over a block, in an order fixed by the block size alone, so a
 * kernel that reduces with them gives the same bits on every run (no atomics).
 *
 * A warp reduces by butterfly shuffles (xor 16, 8, 4, 2, 1): each step adds a lane's value to its
 * partner's, and since a + b == b + a exactly, every lane ends with the same bits. A block reduces
 * each warp, puts the 32 warp results in shared memory and lets every warp reduce those again,
 * which hands every thread the total without a broadcast step.
 *
 * The caller passes 32 slots of __shared__ scratch; every thread of the block must make the call
 * (it synchronizes), and blockDim.x must be a multiple of 32. Consecutive calls may share the
 * scratch: each call synchronizes before writing it.
 */
#pragma once

#include <cuda_runtime.h>

#include <math.h>

namespace dape::cuda {

template <class T>
__device__ inline T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// fmaxf: a NaN loses to a number (callers keep NaN out of maxima or let it reach a sum).
__device__ inline float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

template <class T>
__device__ inline T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // earlier readers of scratch are done
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_sum(lane < warps ? scratch[lane] : T(0));
}

__device__ inline float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_max(lane < warps ? scratch[lane] : -INFINITY);
}

}  // namespace dape::cuda
