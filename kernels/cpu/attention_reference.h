/*
 * The materialized reference attention: the readable O(N²) oracle for every fused kernel.
 *
 * One query row at a time, for all heads at once: S[:, i, j] and B[:, i, j] for j ≤ i form a
 * [2H][j] panel (f's input), then A = S + B (+ f([S; B])), the causal softmax and P·V, exactly
 * as kernels/attention.h states the math; f is never evaluated at masked positions j > i.
 * Position-only quantities (the bias per distance, FIRE's g per (i, j)) are computed once per
 * call. Backward recomputes every row from the inputs (nothing but out and lse is saved), walks
 * the chain rule, and materializes P and dS as [H, N, M] per batch element for the pass over key
 * columns that sums dk and dv. Memory: O(H·N·M) in backward (and for FIRE's bias table), O(H·M)
 * per thread in forward. The loops over j are vectorized (kernels/cpu/simd_rows.h); rows are
 * spread over OpenMP threads.
 * f's and the position scheme's parameter gradients are reduced from fixed-size row blocks in
 * block order, so results do not depend on the thread count.
 *
 * The whole interface is supported. Keys may outnumber queries (M = kv_len ≥ N): query row t is
 * then at absolute position i = M − N + t, which is what the causal mask (j ≤ i) and every
 * position bias use. q, k and v each have their own row and batch strides. With a head range,
 * S, B and f's input cover all H heads while A, softmax and P·V (and v, out, lse, dout, dv) cover
 * the local heads only; backward then starts from dA on the local heads, and f's input gradient
 * carries it to the S and B of every head, so dq, dk and the parameter gradients are this
 * call's share (they are linear in dA, which the head ranges partition).
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
