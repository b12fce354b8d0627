/*
 * The attention core's arguments: shapes, the position scheme, DAPE's f, and their gradients.
 *
 * Layout. q, k and v are token-major, [B, N, H, D] with a row stride between tokens, so they can
 * point straight into a fused QKV projection's output ([B*N, 3*H*D]: q at column 0, k at H*D,
 * v at 2*H*D, row_stride 3*H*D) without a copy. The output is [B, N, Hl, D] contiguous and lse
 * [B, Hl, N], over the Hl local heads (all H unless a head range is given). The gradients dq,
 * dk, dv use the same strides as q, k, v.
 *
 * Math (DESIGN.md §1), per batch element, head h, query i, key j ≤ i:
 *   S[h,i,j] = q_h,i · k_h,j / sqrt(D)
 *   B[h,i,j] = the scheme's bias (0 for none/learned/rope; rope is applied to q and k before)
 *   A = S + B                      or, with DAPE,   A = S + B + f([S[:,i,j]; B[:,i,j]])
 *   f = Linear(2H→W) → LeakyReLU(0.01) → Linear(W→H), weights as PyTorch (out, in)
 *   P = softmax over j ≤ i of A;  out = P V;  lse[b,h,i] = log Σ_j exp(A[h,i,j])
 *
 * Decoding with a KV cache: the keys may outnumber the queries (kv_len > seq_len); the queries
 * are then the last seq_len positions, query t at position kv_len − seq_len + t, and k and v may
 * live in cache buffers with their own strides.
 *
 * Tensor parallelism: with a head range [head_begin, head_begin + local_heads), q and k hold all
 * H heads (f needs every head's logit), while v, out, lse, dout and dv hold only the local heads
 * (v's head index is local). Softmax and P·V run for the local heads only. dq and dk then hold
 * this call's share of the gradient for all H heads, and the parameter gradients its share too:
 * summed over the calls of every head range, they are the full gradients.
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
  int seq_len = 0;             // query rows per sequence
  int heads = 0;               // H: every head, as f sees them
  int head_dim = 0;            // D
  int64_t qkv_row_stride = 0;  // elements between consecutive tokens of q (and dq), and of k and v
                               // unless their own strides are set

  // Optional (0 = the default in brackets).
  int kv_len = 0;              // keys per sequence, >= seq_len [seq_len]
  int64_t k_row_stride = 0;    // between tokens of k and dk [qkv_row_stride]
  int64_t v_row_stride = 0;    // between tokens of v and dv [qkv_row_stride]
  int64_t k_batch_stride = 0;  // between sequences of k and dk [keys() · k row stride]
  int64_t v_batch_stride = 0;  // between sequences of v and dv [keys() · v row stride]
  int head_begin = 0;          // first local head [0]
  int local_heads = 0;         // local heads [heads]

  int keys() const { return kv_len > 0 ? kv_len : seq_len; }
  // Position of query row 0 (queries are the last seq_len of the keys' positions).
  int query_offset() const { return keys() - seq_len; }
  int local() const { return local_heads > 0 ? local_heads : heads; }
  int64_t q_stride() const { return qkv_row_stride; }
  int64_t q_batch() const { return int64_t{seq_len} * qkv_row_stride; }
  int64_t k_stride() const { return k_row_stride > 0 ? k_row_stride : qkv_row_stride; }
  int64_t v_stride() const { return v_row_stride > 0 ? v_row_stride : qkv_row_stride; }
  int64_t k_batch() const {
    return k_batch_stride > 0 ? k_batch_stride : int64_t{keys()} * k_stride();
  }
  int64_t v_batch() const {
    return v_batch_stride > 0 ? v_batch_stride : int64_t{keys()} * v_stride();
  }
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
