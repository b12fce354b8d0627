// cuBLASLt GEMMs of a linear layer (kernels/cuda/gemm.h).
#include "kernels/cuda/gemm.h"

#include <cublas_api.h>

#include <utility>

#include "common/check.h"
#include "common/log.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"

namespace dape::cuda {
namespace {

[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call,
                                     const std::string& context, const char* file, int line) {
  fail("cuBLASLt error {} ({}) in {} for {} at {}:{}", cublasGetStatusName(status),
       cublasGetStatusString(status), call, context, file, line);
}

void check_cublas(cublasStatus_t status, const char* call, const std::string& context,
                  const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, call, context, file, line);
}

// DAPE_CUBLAS_CHECK(cublasLt...(...), "what this GEMM is"): throws dape::Error on any failure.
#define DAPE_CUBLAS_CHECK(expr, context) check_cublas((expr), #expr, (context), __FILE__, __LINE__)

// The largest power of two (up to 256, cuBLASLt's default assumption) dividing the address.
uint32_t pointer_alignment(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

template <class T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value,
              const std::string& what) {
  DAPE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)), what);
}

template <class T>
void set_preference(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attribute,
                    const T& value, const std::string& what) {
  DAPE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof(value)),
                    what);
}

}  // namespace

LinearGemms::LinearGemms(cudaStream_t stream, bool bf16) : stream_(stream), bf16_(bf16) {
  try {
    const std::string what = "the cuBLASLt setup";
    DAPE_CUBLAS_CHECK(cublasLtCreate(&handle_), what);
    DAPE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference_), what);
    const uint64_t workspace_bytes = kWorkspaceBytes;
    set_preference(preference_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, workspace_bytes, what);
    DAPE_CUDA_CHECK(cudaMallocAsync(&workspace_, kWorkspaceBytes, stream_));
  } catch (...) {
    release();
    throw;
  }
}

LinearGemms::~LinearGemms() {
  release();
}

void LinearGemms::release() noexcept {
  // Errors cannot be thrown from here (a destructor, or unwinding a failed constructor); after
  // a device error every call below fails the same way, and there is nothing left to save.
  for (auto& [key, p] : plans_) {
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  }
  plans_.clear();
  if (ones_) cudaFreeAsync(ones_, stream_);
  if (workspace_) cudaFreeAsync(workspace_, stream_);
  ones_ = nullptr;
  workspace_ = nullptr;
  if (preference_) cublasLtMatmulPreferenceDestroy(preference_);
  if (handle_) cublasLtDestroy(handle_);
  preference_ = nullptr;
  handle_ = nullptr;
}

LinearGemms::Plan& LinearGemms::plan(const PlanKey& key, const ColumnMajorGemm& g,
                                     const float* bias, const GemmName& name) {
  auto found = plans_.find(key);
  if (found != plans_.end()) return found->second;

  Plan p;
  p.what = fmt::format("{} (M={}, N={}, K={})", name.op, name.M, name.N, name.K);
  const std::string& what = p.what;
  try {
    const cublasComputeType_t compute = bf16_ ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
    DAPE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, compute, CUDA_R_32F), what);
    const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, op_a, what);
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, op_b, what);
    if (key.bias) {
      set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS, what);
      // The heuristic reads the pointer's alignment (never its data): set the real one.
      set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(bias), what);
    }
    DAPE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_32F, static_cast<uint64_t>(g.a_rows),
                                                 static_cast<uint64_t>(g.a_cols), g.lda),
                      what);
    DAPE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_32F, static_cast<uint64_t>(g.b_rows),
                                                 static_cast<uint64_t>(g.b_cols), g.ldb),
                      what);
    DAPE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, static_cast<uint64_t>(g.m),
                                                 static_cast<uint64_t>(g.n), g.ldc),
                      what);

    set_preference(preference_, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_a, what);
    set_preference(preference_, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_b, what);
    set_preference(preference_, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_c, what);
    set_preference(preference_, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_c, what);
    cublasLtMatmulHeuristicResult_t result{};
    int count = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
        handle_, p.desc, p.a, p.b, p.c, p.c, preference_, 1, &result, &count);
    const bool found_algo = status == CUBLAS_STATUS_SUCCESS && count > 0 &&
                            result.state == CUBLAS_STATUS_SUCCESS &&
                            result.workspaceSize <= kWorkspaceBytes;
    if (found_algo) {
      p.algo = result.algo;
      p.has_algo = true;
    } else if (key.bias &&
               (status == CUBLAS_STATUS_SUCCESS || status == CUBLAS_STATUS_NOT_SUPPORTED)) {
      // No algorithm with the bias epilogue here: the caller adds the bias by a second GEMM.
      DAPE_LOG_DEBUG(
          "cuBLASLt has no bias-epilogue algorithm for {} (bias aligned to {} bytes); "
          "the bias is added by a rank-1 GEMM",
          what, key.align_bias);
    } else {
      DAPE_CUBLAS_CHECK(status, what);
      fail(
          "cuBLASLt offers no algorithm for {} ({} GEMM {}x{}x{}, op(A) {}, op(B) {}, lda {}, ldb "
          "{}, ldc {}, alignments A {} B {} C {} bytes; heuristic returned {} result(s), state {})",
          what, bf16_ ? "bf16" : "fp32", g.m, g.n, g.k, g.trans_a ? "T" : "N",
          g.trans_b ? "T" : "N", g.lda, g.ldb, g.ldc, key.align_a, key.align_b, key.align_c, count,
          count > 0 ? cublasGetStatusName(result.state) : "none");
    }
  } catch (...) {
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    throw;
  }
  return plans_.emplace(key, std::move(p)).first->second;
}

bool LinearGemms::run(const ColumnMajorGemm& g, const float* a, const float* b, float* c,
                      bool accumulate, const float* bias, const GemmName& name) {
  PlanKey key;
  key.m = g.m;
  key.n = g.n;
  key.k = g.k;
  key.lda = g.lda;
  key.ldb = g.ldb;
  key.ldc = g.ldc;
  key.trans_a = g.trans_a;
  key.trans_b = g.trans_b;
  key.bias = bias != nullptr;
  key.accumulate = accumulate;
  key.align_a = pointer_alignment(a);
  key.align_b = pointer_alignment(b);
  key.align_c = pointer_alignment(c);
  key.align_bias = bias != nullptr ? pointer_alignment(bias) : 0;
  Plan& p = plan(key, g, bias, name);
  if (!p.has_algo) return false;
  if (bias != nullptr) {
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(bias), p.what);
  }
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  // C and D are the same matrix (in place), as cuBLASLt allows when their layouts are equal.
  DAPE_CUBLAS_CHECK(cublasLtMatmul(handle_, p.desc, &alpha, a, p.a, b, p.b, &beta, c, p.c, c, p.c,
                                   &p.algo, workspace_, kWorkspaceBytes, stream_),
                    p.what);
  return true;
}

const float* LinearGemms::ones(int64_t n) {
  if (n > ones_size_) {
    if (ones_) DAPE_CUDA_CHECK(cudaFreeAsync(ones_, stream_));
    ones_ = nullptr;
    ones_size_ = 0;
    void* p = nullptr;
    DAPE_CUDA_CHECK(cudaMallocAsync(&p, static_cast<size_t>(n) * sizeof(float), stream_));
    ones_ = static_cast<float*>(p);
    fill(ones_, n, 1.0f, stream_);
    ones_size_ = n;
  }
  return ones_;
}

void LinearGemms::forward(float* out, const float* x, const float* w, const float* b, int64_t M,
                          int64_t N, int64_t K) {
  if (M == 0 || N == 0) return;
  DAPE_CHECK(K > 0, "matmul_forward: K must be positive, got {}", K);
  const GemmName name{"matmul_forward", M, N, K};
  // A = w, B = x, C = out (kernels/gemm_layout.h); the bias runs along C's m = N rows.
  const ColumnMajorGemm g = linear_forward_gemm(M, N, K);
  if (run(g, w, x, out, /*accumulate=*/false, b, name)) return;
  // No bias epilogue for this case: out = x · wᵀ, then out += 1_M · bᵀ, the row-major product
  // of ones [M, 1] and b [1, N] (X = ones with row length 1, Y = b with row length N).
  run(g, w, x, out, /*accumulate=*/false, nullptr, name);
  const ColumnMajorGemm bias_gemm = column_major_gemm(/*trans_x=*/false, /*trans_y=*/false, M, N,
                                                      /*K=*/1, /*ldx=*/1, /*ldy=*/N, /*ldz=*/N);
  run(bias_gemm, b, ones(M), out, /*accumulate=*/true, nullptr,
      GemmName{"matmul_forward bias as a rank-1 GEMM", M, N, 1});
}

void LinearGemms::backward_dx(float* dx, const float* dout, const float* w, int64_t M, int64_t N,
                              int64_t K, bool accumulate) {
  if (M == 0 || K == 0) return;
  if (N == 0) {
    // An empty inner dimension: dx = 0 (or unchanged when accumulating), as BLAS defines it.
    if (!accumulate) DAPE_CUDA_CHECK(cudaMemsetAsync(dx, 0, M * K * sizeof(float), stream_));
    return;
  }
  // A = w, B = dout, C = dx.
  run(linear_backward_dx_gemm(M, N, K), w, dout, dx, accumulate, nullptr,
      GemmName{"matmul_backward dx", M, N, K});
}

void LinearGemms::backward_dw(float* dw, const float* dout, const float* x, int64_t M, int64_t N,
                              int64_t K) {
  if (M == 0 || N == 0 || K == 0) return;  // dw += nothing
  // A = x, B = dout, C = dw, accumulated.
  run(linear_backward_dw_gemm(M, N, K), x, dout, dw, /*accumulate=*/true, nullptr,
      GemmName{"matmul_backward dw", M, N, K});
}

}  // namespace dape::cuda
