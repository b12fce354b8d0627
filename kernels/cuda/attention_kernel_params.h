/*
 * The arguments of the fused attention kernels as one plain struct: device pointers, sizes,
 * strides and the shared-memory layout. It carries nothing but numbers and pointers, so that
 * .cu files (which keep fmt out) and the host emulation of the kernels
 * (tests/unit/attention_cuda_emulation_test.cpp) both take it as is; attention_fused_args.h
 * builds it from AttentionInputs after checking them.
 */
#pragma once

#include <cstdint>

#include "kernels/attention_tiling.h"

namespace dape::cuda {

// The position bias the kernels compute (none, learned and rope have none).
enum class BiasKind : int { none, alibi, kerple, fire };

struct AttentionKernelParams {
  // Sizes (kernels/attention.h): B sequences of N queries over M keys (query t at position
  // M − N + t), H heads of which the local ones are [h0, h0 + Hl), head dimension D, f's width
  // W (0 without DAPE), g's width G (0 unless FIRE).
  int B = 0, N = 0, M = 0, H = 0, Hl = 0, h0 = 0, D = 0, W = 0, G = 0;
  BiasKind bias = BiasKind::none;
  bool dape = false;
  bool fire_leaky = false;  // g's activation: LeakyReLU(0.01), else ReLU
  float scale = 0;          // 1/sqrt(D)
  float fire_L = 0;
  // Strides in elements: between tokens (row) and sequences (batch) of q/dq, k/dk, v/dv.
  int64_t q_row = 0, q_batch = 0, k_row = 0, k_batch = 0, v_row = 0, v_batch = 0;

  // Inputs.
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const float* kerple_p = nullptr;  // [H] (used clamped)
  const float* kerple_a = nullptr;
  const float* fire_c = nullptr;     // [1]
  const float* fire_mult = nullptr;  // [1]
  const float* fire_w1 = nullptr;    // [G]
  const float* fire_b1 = nullptr;    // [G]
  const float* fire_w2 = nullptr;    // [H, G]
  const float* fire_b2 = nullptr;    // [H]
  const float* w1 = nullptr;         // f: [W, 2H]
  const float* b1 = nullptr;         // [W]
  const float* w2 = nullptr;         // [H, W]
  const float* b2 = nullptr;         // [H]

  // Forward outputs: out [B, N, Hl, D], lse [B, Hl, N].
  float* out = nullptr;
  float* lse = nullptr;
  // Backward inputs: the forward's out and lse, and dout [B, N, Hl, D].
  const float* saved_out = nullptr;
  const float* saved_lse = nullptr;
  const float* dout = nullptr;
  // Backward outputs, overwritten (strided like q, k, v).
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
  // Parameter gradients, accumulated (+=); null when the call has no such parameter.
  float* grad_w1 = nullptr;
  float* grad_b1 = nullptr;
  float* grad_w2 = nullptr;
  float* grad_b2 = nullptr;
  float* grad_kerple_p = nullptr;
  float* grad_kerple_a = nullptr;
  float* grad_fire_c = nullptr;
  float* grad_fire_mult = nullptr;
  float* grad_fire_w1 = nullptr;
  float* grad_fire_b1 = nullptr;
  float* grad_fire_w2 = nullptr;
  float* grad_fire_b2 = nullptr;
  // The dq kernel's per-block partial sums of the parameter gradients: [blocks][grad.total].
  double* partials = nullptr;
  attention_tiling::GradLayout grad;

  // The launched kernel's shared-memory layout.
  attention_tiling::TileLayout layout;
};

// Launch geometry, shared by the launchers and the host emulation.
inline int forward_blocks(const AttentionKernelParams& p) {
  return p.B * attention_tiling::query_blocks(p.N);
}
inline int dq_blocks(const AttentionKernelParams& p) {
  return attention_tiling::gradient_blocks(p.B * attention_tiling::query_blocks(p.N));
}
inline int dkdv_blocks(const AttentionKernelParams& p) {
  return p.B * attention_tiling::key_tiles(p.M);
}

}  // namespace dape::cuda
