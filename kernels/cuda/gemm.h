/*
 * The GEMMs of a linear layer on CUDA, through cuBLASLt.
 *
 * Ops is row-major (PyTorch's [out, in] weights); cuBLASLt is column-major. kernels/gemm_layout.h
 * maps each of the three products onto a column-major GEMM (and is unit-tested without a GPU):
 *
 *     forward  out [M, N]  = x [M, K] · w [N, K]ᵀ + b [N]   A = w (T), B = x (N),    beta 0
 *     dx       dx  [M, K]  = dout [M, N] · w [N, K]         A = w (N), B = dout (N), beta 0 or 1
 *     dw       dw  [N, K] += dout [M, N]ᵀ · x [M, K]        A = x (N), B = dout (T), beta 1
 *
 * The bias of the forward pass is cuBLASLt's BIAS epilogue: it adds a vector along the rows of
 * the column-major output, which are the N columns of the row-major one. Should cuBLASLt offer no
 * algorithm with the epilogue for some shape and pointer alignment, the bias is added by a second,
 * rank-1 GEMM (out += 1_M · bᵀ, beta 1) instead, so every shape runs. The bias gradient is not
 * here: it must be accumulated (db +=), which the BGRAD epilogues do not do (they overwrite), so
 * CudaOps takes it from the fixed-order column sum in kernels/cuda/launch.h.
 *
 * Precision: float32 operands and outputs in both modes. fp32 computes with CUBLAS_COMPUTE_32F
 * (no TF32: the GPU tests compare with the CPU at ≈1e-5); bf16 with CUBLAS_COMPUTE_32F_FAST_16BF,
 * where cuBLASLt rounds the operands to bf16 for the tensor cores and accumulates in float32.
 *
 * Plans. A cuBLASLt call needs an operation descriptor, three layouts and an algorithm from the
 * heuristic; making them costs far more than a small GEMM, so they are made once per distinct
 * (shape, transposes, leading dimensions, beta, epilogue, pointer alignments) and kept. The
 * alignments are part of the key because the heuristic picks algorithms that rely on them
 * (tensors are views into flat buffers, so a pointer may be only 4-byte aligned). Every cuBLASLt
 * status is checked; a failure throws dape::Error naming the call and the GEMM's shape.
 *
 * Determinism: the heuristic is a pure function of the key on a given device and library
 * version, and the chosen algorithms reduce in a fixed order, so results repeat bit for bit.
 * All work is enqueued on one stream, which also orders the shared 32 MiB workspace.
 */
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <compare>
#include <cstdint>
#include <map>
#include <string>

#include "kernels/gemm_layout.h"

namespace dape::cuda {

class LinearGemms {
 public:
  // Uses the current device; every GEMM is enqueued on `stream`. bf16: see above.
  LinearGemms(cudaStream_t stream, bool bf16);
  ~LinearGemms();
  LinearGemms(const LinearGemms&) = delete;
  LinearGemms& operator=(const LinearGemms&) = delete;

  // out [M, N] = x [M, K] · w [N, K]ᵀ (+ b [N] when b != nullptr).
  void forward(float* out, const float* x, const float* w, const float* b, int64_t M, int64_t N,
               int64_t K);
  // dx [M, K] = dout [M, N] · w [N, K], or += when accumulate.
  void backward_dx(float* dx, const float* dout, const float* w, int64_t M, int64_t N, int64_t K,
                   bool accumulate);
  // dw [N, K] += dout [M, N]ᵀ · x [M, K].
  void backward_dw(float* dw, const float* dout, const float* x, int64_t M, int64_t N, int64_t K);

  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

 private:
  // Names a GEMM in messages: the Ops call and its row-major shape.
  struct GemmName {
    const char* op;
    int64_t M, N, K;
  };
  struct PlanKey {
    int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
    bool trans_a = false, trans_b = false, bias = false, accumulate = false;
    uint32_t align_a = 0, align_b = 0, align_c = 0, align_bias = 0;
    auto operator<=>(const PlanKey&) const = default;
  };
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool has_algo = false;  // false only for a bias epilogue cuBLASLt cannot do here
    std::string what;       // "matmul_forward (M=.., N=.., K=..)", for messages
  };

  // C = op(A) · op(B) (+ C when accumulate) (+ bias along C's rows), column-major as `g`
  // describes. Returns false, having done nothing, only when bias != nullptr and cuBLASLt has no
  // algorithm for the epilogue.
  bool run(const ColumnMajorGemm& g, const float* a, const float* b, float* c, bool accumulate,
           const float* bias, const GemmName& name);
  Plan& plan(const PlanKey& key, const ColumnMajorGemm& g, const float* bias, const GemmName& name);
  // A device vector of at least `n` ones (for the rank-1 bias GEMM).
  const float* ones(int64_t n);
  void release() noexcept;

  cudaStream_t stream_ = nullptr;
  bool bf16_ = false;
  cublasLtHandle_t handle_ = nullptr;
  cublasLtMatmulPreference_t preference_ = nullptr;
  void* workspace_ = nullptr;
  float* ones_ = nullptr;
  int64_t ones_size_ = 0;
  std::map<PlanKey, Plan> plans_;
};

}  // namespace dape::cuda
