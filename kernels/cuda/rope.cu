/*
 * Rotary position embedding over the full head dimension with NeoX's rotate_half, in place on q
 * and k (kernels/cpu/rope.cpp has the math):
 *   inv_freq[j] = base^(−2j/D), angle = (pos_offset + n) · inv_freq[j],
 *   (x₁, x₂) → (x₁ cos − x₂ sin, x₂ cos + x₁ sin)   for the pair (x[j], x[j + D/2]);
 * inverse = true rotates by −angle (the transpose, for the gradients).
 *
 * One thread per (token, j): it computes the angle, cos and sin in double, exactly the CPU's
 * expression (pow(base, −2.0·j/D), the position converted from int), rounds cos and sin to
 * float once, as the CPU's table does, and then rotates pair j of every head of the token's q
 * and k rows in float. So the two backends apply the same float rotation matrices (CUDA's double
 * pow and sincos are within 2 ulp of glibc's, which the rounding to float almost always erases),
 * and results differ only where one contracts a product into a fused multiply-add. The double
 * pow and sincos are per (token, j), shared by all heads of q and k: half a million at
 * B·N = 16k, D = 64, against 4·H·D loads and stores per token. Consecutive threads take
 * consecutive j, so the accesses to each head's first and second halves are contiguous runs.
 */
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/chunked_loop.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/index_math.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/launch_check.cuh"

namespace dape::cuda {
namespace {

// Rotates pair j of every head of one token row.
__device__ inline void rotate_heads(float* row, int heads, int head_dim, int j, float cos_a,
                                    float sin_a) {
  const int half = head_dim / 2;
  for (int h = 0; h < heads; ++h) {
    float* x1 = row + static_cast<int64_t>(h) * head_dim + j;
    float* x2 = x1 + half;
    const float a = *x1, b = *x2;
    *x1 = a * cos_a - b * sin_a;
    *x2 = b * cos_a + a * sin_a;
  }
}

__global__ void rope_kernel(float* q, int64_t q_row_stride, float* k, int64_t k_row_stride,
                            int64_t tokens, int seq_len, int heads, int head_dim, int pos_offset,
                            double base, float sin_sign) {
  const int half = head_dim / 2;
  const int64_t items = tokens * half;
  for (int64_t i = grid_thread_index(); i < items; i += grid_thread_count()) {
    const int64_t t = i / half;
    const int j = static_cast<int>(i % half);
    const int n = static_cast<int>(t % seq_len);
    const double inv_freq = pow(base, -2.0 * j / head_dim);
    const double angle = static_cast<double>(pos_offset + n) * inv_freq;
    double sin_d, cos_d;
    sincos(angle, &sin_d, &cos_d);
    const float cos_a = static_cast<float>(cos_d);
    const float sin_a = sin_sign * static_cast<float>(sin_d);
    rotate_heads(q + t * q_row_stride, heads, head_dim, j, cos_a, sin_a);
    rotate_heads(k + t * k_row_stride, heads, head_dim, j, cos_a, sin_a);
  }
}

}  // namespace

void rope(float* q, int64_t q_row_stride, float* k, int64_t k_row_stride, int batch, int seq_len,
          int heads, int head_dim, int pos_offset, double base, bool inverse, cudaStream_t stream) {
  if (batch <= 0 || seq_len <= 0 || heads <= 0) return;
  DAPE_CUDA_REQUIRE(head_dim >= 2 && head_dim % 2 == 0,
                    "rope: the head dimension must be even and at least 2");
  DAPE_CUDA_REQUIRE(q != nullptr && k != nullptr, "rope: q and k must both be given");
  DAPE_CUDA_REQUIRE(q_row_stride >= static_cast<int64_t>(heads) * head_dim &&
                        k_row_stride >= static_cast<int64_t>(heads) * head_dim,
                    "rope: a row stride is shorter than a token's heads * head_dim");
  const int64_t tokens = static_cast<int64_t>(batch) * seq_len;
  const int blocks = grid_blocks(tokens * (head_dim / 2), kBlockThreads, kMaxGridStrideBlocks);
  rope_kernel<<<blocks, kBlockThreads, 0, stream>>>(q, q_row_stride, k, k_row_stride, tokens,
                                                    seq_len, heads, head_dim, pos_offset, base,
                                                    inverse ? -1.0f : 1.0f);
  DAPE_CUDA_LAUNCHED("rope_kernel");
}

}  // namespace dape::cuda
