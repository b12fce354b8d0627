/*
 * AdamW with PyTorch's semantics (torch.optim.AdamW, single-tensor path), element by element in
 * double, exactly the CPU kernel's arithmetic (kernels/cpu/adamw.cpp):
 *   p ← p · (1 − lr·wd)                                    decoupled weight decay
 *   m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²        stored as float
 *   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)   from the stored m and v
 * The step's constants (the decay factor, lr / (1 − β1^t), √(1 − β2^t)) are computed on the host
 * with the same std::pow and std::sqrt as the CPU backend, so they are the same doubles. On the
 * device, double division and square root are correctly rounded, so the per-element results
 * differ from the CPU's only where a product is contracted into a fused multiply-add (a last-bit
 * difference in double, almost never visible after rounding to float).
 *
 * The update is memory bound (four float streams in, three out), so the double arithmetic should
 * hide behind the memory traffic; chunks of four elements move as float4 when all four arrays
 * are 16-byte aligned.
 */
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/chunked_loop.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/index_math.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/launch_check.cuh"

namespace dape::cuda {
namespace {

struct AdamWStep {
  double decay;  // 1 − lr·wd
  double beta1, beta2;
  double step_size;  // lr / (1 − β1^t)
  double bias_correction2_sqrt;
  double eps;

  // Updates one element; p, m, v are read and written.
  __device__ void operator()(float& p, float g, float& m, float& v) const {
    const double gd = g;
    const float m_new = static_cast<float>(beta1 * static_cast<double>(m) + (1.0 - beta1) * gd);
    const float v_new =
        static_cast<float>(beta2 * static_cast<double>(v) + (1.0 - beta2) * (gd * gd));
    m = m_new;
    v = v_new;
    const double denom = sqrt(static_cast<double>(v_new)) / bias_correction2_sqrt + eps;
    p = static_cast<float>(static_cast<double>(p) * decay -
                           step_size * static_cast<double>(m_new) / denom);
  }
};

__global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, int64_t n,
                             AdamWStep step, bool vec) {
  const int64_t chunks = chunks_of_4(n);
  for (int64_t c = grid_thread_index(); c < chunks; c += grid_thread_count()) {
    const int64_t i = 4 * c;
    float4 p4 = load4(params, i, n, vec), m4 = load4(m, i, n, vec), v4 = load4(v, i, n, vec);
    const float4 g4 = load4(grads, i, n, vec);
    step(p4.x, g4.x, m4.x, v4.x);
    step(p4.y, g4.y, m4.y, v4.y);
    step(p4.z, g4.z, m4.z, v4.z);
    step(p4.w, g4.w, m4.w, v4.w);
    store4(params, i, n, vec, p4);  // elements past n are computed on zeros and not stored
    store4(m, i, n, vec, m4);
    store4(v, i, n, vec, v4);
  }
}

}  // namespace

void adamw(float* params, const float* grads, float* m, float* v, int64_t n, double lr,
           double beta1, double beta2, double eps, double weight_decay, int64_t step,
           cudaStream_t stream) {
  DAPE_CUDA_REQUIRE(step >= 1, "adamw: step must be >= 1 (bias correction is 1-based)");
  if (n <= 0) return;
  AdamWStep s;
  s.decay = 1.0 - lr * weight_decay;
  s.beta1 = beta1;
  s.beta2 = beta2;
  s.step_size = lr / (1.0 - std::pow(beta1, static_cast<double>(step)));
  s.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step)));
  s.eps = eps;
  const bool vec = aligned16(params) && aligned16(grads) && aligned16(m) && aligned16(v);
  const int blocks = grid_blocks(chunks_of_4(n), kBlockThreads, kMaxGridStrideBlocks);
  adamw_kernel<<<blocks, kBlockThreads, 0, stream>>>(params, grads, m, v, n, s, vec);
  DAPE_CUDA_LAUNCHED("adamw_kernel");
}

}  // namespace dape::cuda
