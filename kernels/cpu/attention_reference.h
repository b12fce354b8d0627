/*
 * The materialized reference attention: the readable O(N²) oracle for every fused kernel.
 *
 * One query row at a time, for all heads at once: S[:, i, j] and B[:, i, j] for j ≤ i form a
 * [2H][j] panel (f's input), then A = S + B (+ f([S; B])), the causal softmax and P·V, exactly
 * as kernels/attention.h states the math; f is never evaluated at masked positions j > i.
 * Position-only quantities (the bias per distance, FIRE's g per (i, j)) are computed once per
 * call. Backward recomputes every row from the inputs (nothing but out and lse is saved), walks
 * the chain rule, and materializes P and dS as [H, N, N] per batch element for the pass over key
 * columns that sums dk and dv. Memory: O(H·N²) in backward (and for FIRE's bias table), O(H·N)
 * per thread in forward. The loops over j are vectorized (kernels/cpu/simd_rows.h); rows are
 * spread over OpenMP threads.
 * f's and the position scheme's parameter gradients are reduced from fixed-size row blocks in
 * block order, so results do not depend on the thread count.
 */
#pragma once

#include "kernels/attention.h"

namespace dape::cpu {

template <class T>
void attention_reference_forward(const AttentionInputs& in, T* out, T* lse);

template <class T>
void attention_reference_backward(const AttentionInputs& in, const T* out, const T* lse,
                                  const T* dout, const AttentionGrads& grads);

}  // namespace dape::cpu
