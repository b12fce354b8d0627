/*
 * Dense matrix multiply on the CPU, row-major:  C[M,N] = alpha · op(A) · op(B) + beta · C.
 *
 * float goes to oneDNN's sgemm (measured ≈370–400 GFLOP/s on 2 cores of this machine's Xeon for
 * the shapes the model uses; see bench/gemm). double, used only by gradient checks, is a plain
 * blocked loop: correct and fast enough for small test models, never used for training.
 * Deterministic for a fixed thread count.
 */
#pragma once

#include <cstdint>

namespace dape::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace dape::cpu
