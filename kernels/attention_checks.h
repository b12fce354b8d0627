/*
 * Checks of the attention core's arguments (kernels/attention.h) at the entry of every
 * implementation — the CPU reference, the CPU fused kernel, the CUDA kernels — so that one set of
 * rules and messages says what a call may be: positive sizes, kv_len >= seq_len, the head range
 * inside the heads, strides that cover a token, q/k/v views long enough, every parameter tensor
 * of the scheme and of DAPE's f (and every gradient) of the right size, all in one dtype. A
 * failed check is an internal error (DAPE_CHECK): the model builds these arguments.
 * Limits of one implementation (the CUDA kernels' largest H, D, widths) stay with it.
 */
#pragma once

#include "kernels/attention.h"

namespace dape {

// Everything AttentionInputs holds, for a computation in `dt`.
void check_attention_inputs(const AttentionInputs& in, DType dt);
// Backward's outputs: dq, dk, dv long enough, and a gradient of the parameter's size for every
// learned parameter of `in`.
void check_attention_grads(const AttentionInputs& in, const AttentionGrads& g, DType dt);

}  // namespace dape
