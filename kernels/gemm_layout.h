/*
 * Row-major GEMMs as the column-major GEMMs that cuBLAS and cuBLASLt compute.
 *
 * Ops speaks row-major (PyTorch's layout); BLAS libraries on the GPU speak column-major. The
 * bridge is one identity: a row-major R × C matrix with leading dimension ld is, byte for byte,
 * the column-major C × R matrix (its transpose) with the same ld. So a row-major product
 *
 *     Z[M, N] = op(X)[M, K] · op(Y)[K, N]
 *
 * is computed as the column-major product of the transposes, Zᵀ = op(Y)ᵀ · op(X)ᵀ:
 *
 *     cuBLAS A = Y's memory, transA = trans_y     (m = N rows of Zᵀ)
 *     cuBLAS B = X's memory, transB = trans_x     (n = M columns of Zᵀ)
 *     cuBLAS C = Z's memory, ldc = Z's row length (k = K)
 *
 * Why transA = trans_y: Y's memory seen column-major is Yᵀ. Untransposed (trans_y false) the
 * product needs op(Y)ᵀ = Yᵀ, which is that memory as is (N); transposed (trans_y true) it needs
 * op(Y)ᵀ = Y = (Yᵀ)ᵀ, the memory transposed (T). The same argument gives transB = trans_x.
 *
 * The three GEMMs of a linear layer (x [M, K], w [N, K], out and dout [M, N]) then read:
 *
 *     forward  out = x · wᵀ       X = x (no), Y = w (T)      → A = w  T, B = x    N; m N, n M, k K
 *     dx       dx = dout · w      X = dout (no), Y = w (no)  → A = w  N, B = dout N; m K, n M, k N
 *     dw      dw += doutᵀ · x     X = dout (T), Y = x (no)   → A = x  N, B = dout T; m K, n N, k M
 *
 * This header is pure arithmetic, free of CUDA, so the mapping is unit-tested in every build
 * (tests/unit/cuda_gemm_mapping_test.cpp runs it through a naive column-major GEMM); the cuBLASLt
 * code in kernels/cuda/gemm.cpp uses exactly these functions.
 */
#pragma once

#include <cstdint>

namespace dape {

// One column-major GEMM, C[m, n] = op(A)[m, k] · op(B)[k, n] (+ beta · C), as cuBLAS sees it.
// The stored matrices are A: a_rows × a_cols (lda), B: b_rows × b_cols (ldb), C: m × n (ldc).
// A is always the row-major Y operand's memory and B the X operand's (see above).
struct ColumnMajorGemm {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t a_rows = 0, a_cols = 0, lda = 0;
  int64_t b_rows = 0, b_cols = 0, ldb = 0;
  int64_t ldc = 0;
};

// Z[M, N] (row-major, row length ldz) = op(X) · op(Y), where X is stored row-major as [M, K]
// (or [K, M] when trans_x) with row length ldx, and Y as [K, N] (or [N, K] when trans_y) with
// row length ldy.
inline ColumnMajorGemm column_major_gemm(bool trans_x, bool trans_y, int64_t M, int64_t N,
                                         int64_t K, int64_t ldx, int64_t ldy, int64_t ldz) {
  ColumnMajorGemm g;
  g.m = N;
  g.n = M;
  g.k = K;
  // A = Y's memory: row-major [K, N] is column-major [N, K] = [m, k]; row-major [N, K] (trans_y)
  // is column-major [K, N] = [k, m].
  g.trans_a = trans_y;
  g.a_rows = trans_y ? K : N;
  g.a_cols = trans_y ? N : K;
  g.lda = ldy;
  // B = X's memory: row-major [M, K] is column-major [K, M] = [k, n]; row-major [K, M] (trans_x)
  // is column-major [M, K] = [n, k].
  g.trans_b = trans_x;
  g.b_rows = trans_x ? M : K;
  g.b_cols = trans_x ? K : M;
  g.ldb = ldx;
  // C = Z's memory: row-major [M, N] is column-major [N, M] = [m, n].
  g.ldc = ldz;
  return g;
}

// out [M, N] = x [M, K] · w [N, K]ᵀ: A = w (T), B = x (N). The bias b [N] runs along the
// column-major output's m = N rows, which is what cuBLASLt's bias epilogue adds.
inline ColumnMajorGemm linear_forward_gemm(int64_t M, int64_t N, int64_t K) {
  return column_major_gemm(/*trans_x=*/false, /*trans_y=*/true, M, N, K, /*ldx=*/K, /*ldy=*/K,
                           /*ldz=*/N);
}

// dx [M, K] = dout [M, N] · w [N, K]: A = w (N), B = dout (N), inner dimension N.
inline ColumnMajorGemm linear_backward_dx_gemm(int64_t M, int64_t N, int64_t K) {
  return column_major_gemm(/*trans_x=*/false, /*trans_y=*/false, M, K, N, /*ldx=*/N, /*ldy=*/K,
                           /*ldz=*/K);
}

// dw [N, K] = dout [M, N]ᵀ · x [M, K]: A = x (N), B = dout (T), inner dimension M.
inline ColumnMajorGemm linear_backward_dw_gemm(int64_t M, int64_t N, int64_t K) {
  return column_major_gemm(/*trans_x=*/true, /*trans_y=*/false, N, K, M, /*ldx=*/N, /*ldy=*/K,
                           /*ldz=*/K);
}

}  // namespace dape
