/*
 * Fused DAPE attention on the CPU: linear memory, forward and backward.
 *
 * The materialized reference holds [H, N, N] logits per sequence; DAPE's reference code also
 * holds [N, N, 2H] inputs and [N, N, W] hidden activations of f (≈13 GB per layer at N = 8192).
 * This kernel never holds more than O(N·H·D) per sequence plus per-thread tiles:
 *
 *   for each (sequence, block of Bq query rows)            — one task, run in parallel
 *     for each block of Bk keys that some row can see      — masked blocks are skipped exactly,
 *                                                            since f is pointwise in (i, j)
 *       S  = Q·Kᵀ/√D for ALL heads of the tile             (f mixes heads: it needs them all)
 *       B  = the scheme's bias (tables by distance; FIRE's g evaluated per pair)
 *       A  = S + B + f([S; B])  as two panel GEMMs over the tile's pairs:
 *            [2H]×[pairs] → W1 → [W]×[pairs] → LeakyReLU → W2 → [H]×[pairs]
 *       online softmax per local head and row; O += P·V
 *
 * Every "panel" is feature-major with the pair index (row·Bk + key) contiguous, so f's layers,
 * the bias and the softmax are SIMD loops over pairs (kernels/cpu/simd_rows.h), and f's two
 * layers run in chunks of pairs that stay in L1.
 *
 * f by distance: where B depends on i − j alone (no bias, RoPE, ALiBi, Kerple), f's first layer
 * splits as W1·[S; B] + b1 = W1_S·S + Z(i − j), and Z(r) = W1_B·B(r) + b1 is tabulated once per
 * call for every distance. That takes half of the first layer out of the tile, in forward and in
 * the backward's recomputation; in backward the B half of f's input gradient and of dW1 is never
 * formed per pair either: ∂/∂hidden is summed per distance over each task's pairs (a vector add
 * per tile row, since a row's keys are consecutive distances), and dW1_B, db1 and Kerple's
 * parameter gradients follow from those sums once per task. Per pair that is 8,448 multiply-adds
 * instead of 9,984 for forward + backward at H = 12, D = 64, W = 32 (−15%); FIRE, whose B
 * depends on i as well, keeps [S; B] in the tile.
 *
 * Backward recomputes each tile from q, k, v and the saved log-sum-exp (P = exp(A − lse)), forms
 * dA = P ⊙ (dP − rowsum(dO ⊙ O)), runs f's backward on the tile (dW1, dW2 and the scheme's
 * parameter gradients as lane-wise partial sums), and sends dS to dq (owned by the task), dk and
 * dv (accumulated in per-thread buffers). Parameter gradients are reduced from per-task partials
 * in task order; dk and dv from per-thread buffers in thread order with a static schedule. So
 * outputs and gradients are bitwise reproducible for a fixed thread count (the forward output and
 * dq, and every parameter gradient, also across thread counts).
 *
 * The local head range (tensor parallelism) and a query offset (decoding against a KV cache) are
 * supported as kernels/attention.h describes.
 */
#pragma once

#include "kernels/attention.h"

namespace dape::cpu {

template <class T>
void attention_fused_forward(const AttentionInputs& in, T* out, T* lse);

template <class T>
void attention_fused_backward(const AttentionInputs& in, const T* out, const T* lse, const T* dout,
                              const AttentionGrads& grads);

}  // namespace dape::cpu
