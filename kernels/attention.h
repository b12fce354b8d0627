/*
 * The attention core's arguments: shapes, the position scheme, DAPE's f, and their gradients.
 *
 * Layout. q, k and v are token-major, [B, N, H, D] with a row stride between tokens, so they can
 * point straight into a fused QKV projection's output ([B*N, 3*H*D]: q at column 0, k at H*D,
 * v at 2*H*D, row_stride 3*H*D) without a copy. The output is [B, N, H, D] contiguous. The
 * gradients dq, dk, dv use the same strides as q, k, v.
 *
 * Math (DESIGN.md §1), per batch element, head h, query i, key j ≤ i:
 *   S[h,i,j] = q_h,i · k_h,j / sqrt(D)
 *   B[h,i,j] = the scheme's bias (0 for none/learned/rope; rope is applied to q and k before)
 *   A = S + B                      or, with DAPE,   A = S + B + f([S[:,i,j]; B[:,i,j]])
 *   f = Linear(2H→W) → LeakyReLU(0.01) → Linear(W→H), weights as PyTorch (out, in)
 *   P = softmax over j ≤ i of A;  out = P V;  lse[b,h,i] = log Σ_j exp(A[h,i,j])
 *
 * Gradients: dq, dk, dv are overwritten; the gradients of learned parameters (Kerple's p and a,
 * FIRE's c, L multiplier and g, DAPE's f) are accumulated (+=), like every parameter gradient.
 */
#pragma once

#include <cstdint>
#include <string>

#include "kernels/tensor.h"

namespace dape {

enum class PositionScheme : uint8_t { none, learned, rope, alibi, kerple, fire };

const char* position_scheme_name(PositionScheme s);
// Parses "none|learned|rope|alibi|kerple|fire"; returns false for anything else.
bool parse_position_scheme(const std::string& name, PositionScheme* out);

struct AttentionShape {
  int batch = 0;
  int seq_len = 0;
  int heads = 0;               // H: every head, as f sees them
  int head_dim = 0;            // D
  int64_t qkv_row_stride = 0;  // elements between consecutive tokens of q, k, v (and dq, dk, dv)
};

struct PositionBias {
  PositionScheme scheme = PositionScheme::none;
  // kerple: [H] each, used clamped to >= kerple_clamp_min.
  Tensor kerple_p, kerple_a;
  // fire: scalars c and L multiplier (shape [1]); g = Linear(1→W) act Linear(W→H):
  // w1 [W, 1], b1 [W], w2 [H, W], b2 [H].
  Tensor fire_c, fire_L_multiplier, fire_w1, fire_b1, fire_w2, fire_b2;
  float fire_L = 512.0f;         // the fixed L; the threshold is |L_multiplier * L|
  bool fire_leaky_relu = false;  // g's activation: LeakyReLU(0.01) when true, else ReLU
};

struct DapeMlp {
  bool enabled = false;
  int width = 0;          // W
  Tensor w1, b1, w2, b2;  // [W, 2H], [W], [H, W], [H]
};

// Everything attention reads.
struct AttentionInputs {
  AttentionShape shape;
  Tensor q, k, v;  // views with shape.qkv_row_stride between tokens
  PositionBias bias;
  DapeMlp dape;
};

// Everything attention's backward writes. Parameter tensors mirror those of AttentionInputs;
// an undefined tensor means "no gradient wanted" only where the input is also undefined.
struct AttentionGrads {
  Tensor dq, dk, dv;
  PositionBias bias;  // only the learned tensors are used (kerple_p/a, fire_*)
  DapeMlp dape;
};

// Which implementation of the attention core the model uses.
enum class AttentionImpl : uint8_t { reference, fused };

}  // namespace dape
