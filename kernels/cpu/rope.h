/*
 * Rotary position embedding over the full head dimension with NeoX's rotate_half:
 *   inv_freq[k] = base^(−2k/D), angle = pos · inv_freq[k], x' = x cos + rotate_half(x) sin,
 *   rotate_half(x) = [−x₂, x₁] (x₁ the first half). Backward applies the transpose (the
 * rotation by −angle). Applied in place to q and k, which are strided views ([B, N, H, D] with
 * shape.qkv_row_stride between tokens).
 */
#pragma once

#include "kernels/attention.h"

namespace dape::cpu {

template <class T>
void rope_forward(T* q, T* k, const AttentionShape& shape, int pos_offset, double base);
template <class T>
void rope_backward(T* dq, T* dk, const AttentionShape& shape, int pos_offset, double base);

}  // namespace dape::cpu
