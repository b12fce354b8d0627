/*
 * The materialized reference attention: the readable O(N²) oracle for every fused kernel.
 *
 * Per batch element it builds the full [H, N, N] logit tensors S and B, applies DAPE's f at
 * every (i, j ≤ i) across all heads, masks j > i after f, takes the softmax and multiplies by V,
 * exactly as kernels/attention.h states the math. Backward recomputes those tensors from the
 * inputs (nothing but out and lse is saved) and walks the chain rule in the same order.
 * Memory is O(H·N²) per batch element; clarity wins over speed here.
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
