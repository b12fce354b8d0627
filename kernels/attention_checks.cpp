/*
 * The attention core's argument checks (kernels/attention_checks.h), shared by every
 * implementation: the CPU reference and fused kernels and the CUDA kernels' argument setup.
 */
#include "kernels/attention_checks.h"

#include <cmath>
#include <string>

#include "common/check.h"

namespace dape {
namespace {

void expect_param(const Tensor& t, DType dt, int64_t numel, const char* what,
                  const std::string& expected) {
  DAPE_CHECK(t.defined(), "attention: {} is undefined; expected {}", what, expected);
  DAPE_CHECK(t.dtype == dt, "attention: {} holds {}, the computation runs in {}", what,
             dtype_name(t.dtype), dtype_name(dt));
  DAPE_CHECK(t.numel() == numel, "attention: {} has shape {} ({} elements); expected {}", what,
             t.shape.str(), t.numel(), expected);
}

// An activation must hold at least `min_numel` elements (`expected` spells out the product).
void expect_activation(const Tensor& t, DType dt, int64_t min_numel, const char* what,
                       const char* expected) {
  DAPE_CHECK(t.defined(), "attention: {} is undefined", what);
  DAPE_CHECK(t.dtype == dt, "attention: {} holds {}, the computation runs in {}", what,
             dtype_name(t.dtype), dtype_name(dt));
  DAPE_CHECK(t.numel() >= min_numel, "attention: {} has shape {} ({} elements), fewer than {} = {}",
             what, t.shape.str(), t.numel(), expected, min_numel);
}

// Row strides must cover a token's width; batch strides (between sequences) must at least keep
// the sequences' rows apart when there is more than one.
void expect_strides(const char* what, int64_t row_field, int64_t row, int64_t batch_field,
                    int64_t batch, int64_t width, const char* width_name, int B) {
  DAPE_CHECK(row_field >= 0 && row >= width,
             "attention: {}'s row stride {} is shorter than a token's {} = {}", what, row,
             width_name, width);
  DAPE_CHECK(batch_field >= 0 && (B == 1 || batch >= width),
             "attention: {}'s batch stride {} is shorter than a token's {} = {}", what, batch,
             width_name, width);
}

void expect_grad(const Tensor& grad, const Tensor& param, DType dt, const char* what) {
  DAPE_CHECK(grad.defined(), "attention backward: the gradient of {} is undefined", what);
  DAPE_CHECK(grad.dtype == dt, "attention backward: the gradient of {} holds {}, expected {}", what,
             dtype_name(grad.dtype), dtype_name(dt));
  DAPE_CHECK(grad.numel() == param.numel(),
             "attention backward: the gradient of {} has {} elements {}, the parameter {}", what,
             grad.numel(), grad.shape.str(), param.numel());
}

}  // namespace

void check_attention_inputs(const AttentionInputs& in, DType dt) {
  const AttentionShape& s = in.shape;
  DAPE_CHECK(s.batch >= 1 && s.seq_len >= 1 && s.heads >= 1 && s.head_dim >= 1,
             "attention: sizes must be positive, got B={} N={} H={} D={}", s.batch, s.seq_len,
             s.heads, s.head_dim);
  DAPE_CHECK(s.kv_len >= 0 && s.keys() >= s.seq_len,
             "attention: kv_len {} is shorter than seq_len {} (the queries are the last seq_len "
             "of the keys' positions)",
             s.kv_len, s.seq_len);
  DAPE_CHECK(s.head_begin >= 0 && s.local_heads >= 0 && s.head_begin + s.local() <= s.heads,
             "attention: the local head range [{}, {}) (head_begin {}, local_heads {}) is not "
             "inside the {} heads [0, {})",
             s.head_begin, s.head_begin + s.local(), s.head_begin, s.local_heads, s.heads, s.heads);
  const int B = s.batch, N = s.seq_len, M = s.keys(), Hn = s.heads;
  const int64_t HD = int64_t{Hn} * s.head_dim, HlD = int64_t{s.local()} * s.head_dim;
  DAPE_CHECK(s.q_stride() >= HD,
             "attention: qkv_row_stride {} (q's row stride) is shorter than a token's H*D = {}",
             s.q_stride(), HD);
  expect_strides("k", s.k_row_stride, s.k_stride(), s.k_batch_stride, s.k_batch(), HD, "H*D", B);
  expect_strides("v", s.v_row_stride, s.v_stride(), s.v_batch_stride, s.v_batch(), HlD,
                 "local heads' Hl*D", B);
  expect_activation(in.q, dt, int64_t{B} * N * HD, "q", "B*N*H*D");
  expect_activation(in.k, dt, int64_t{B} * M * HD, "k", "B*kv_len*H*D");
  expect_activation(in.v, dt, int64_t{B} * M * HlD, "v", "B*kv_len*Hl*D");

  const std::string H = std::to_string(Hn);
  if (in.bias.scheme == PositionScheme::kerple) {
    expect_param(in.bias.kerple_p, dt, Hn, "kerple_p", "[" + H + "]");
    expect_param(in.bias.kerple_a, dt, Hn, "kerple_a", "[" + H + "]");
  } else if (in.bias.scheme == PositionScheme::fire) {
    const PositionBias& f = in.bias;
    DAPE_CHECK(f.fire_b1.defined() && f.fire_b1.numel() >= 1,
               "attention: fire_b1 must be defined with g's width W >= 1 elements");
    const int64_t g_width = f.fire_b1.numel();
    const std::string G = std::to_string(g_width);
    expect_param(f.fire_c, dt, 1, "fire_c", "a scalar");
    expect_param(f.fire_L_multiplier, dt, 1, "fire_L_multiplier", "a scalar");
    expect_param(f.fire_w1, dt, g_width, "fire_w1", "[" + G + ", 1] (W taken from fire_b1)");
    expect_param(f.fire_b1, dt, g_width, "fire_b1", "[" + G + "]");
    expect_param(f.fire_w2, dt, Hn * g_width, "fire_w2", "[" + H + ", " + G + "]");
    expect_param(f.fire_b2, dt, Hn, "fire_b2", "[" + H + "]");
    DAPE_CHECK(std::isfinite(f.fire_L), "attention: fire_L must be finite, got {}", f.fire_L);
  }
  if (in.dape.enabled) {
    const int W = in.dape.width;
    DAPE_CHECK(W >= 1, "attention: DAPE's mlp width must be at least 1, got {}", W);
    const std::string Ws = std::to_string(W), H2 = std::to_string(2 * Hn);
    expect_param(in.dape.w1, dt, int64_t{W} * 2 * Hn, "dape w1", "[" + Ws + ", " + H2 + "]");
    expect_param(in.dape.b1, dt, W, "dape b1", "[" + Ws + "]");
    expect_param(in.dape.w2, dt, int64_t{Hn} * W, "dape w2", "[" + H + ", " + Ws + "]");
    expect_param(in.dape.b2, dt, Hn, "dape b2", "[" + H + "]");
  }
}

void check_attention_grads(const AttentionInputs& in, const AttentionGrads& g, DType dt) {
  const AttentionShape& s = in.shape;
  const int64_t HD = int64_t{s.heads} * s.head_dim, HlD = int64_t{s.local()} * s.head_dim;
  expect_activation(g.dq, dt, int64_t{s.batch} * s.seq_len * HD, "dq", "B*N*H*D");
  expect_activation(g.dk, dt, int64_t{s.batch} * s.keys() * HD, "dk", "B*kv_len*H*D");
  expect_activation(g.dv, dt, int64_t{s.batch} * s.keys() * HlD, "dv", "B*kv_len*Hl*D");
  if (in.bias.scheme == PositionScheme::kerple) {
    expect_grad(g.bias.kerple_p, in.bias.kerple_p, dt, "kerple_p");
    expect_grad(g.bias.kerple_a, in.bias.kerple_a, dt, "kerple_a");
  } else if (in.bias.scheme == PositionScheme::fire) {
    expect_grad(g.bias.fire_c, in.bias.fire_c, dt, "fire_c");
    expect_grad(g.bias.fire_L_multiplier, in.bias.fire_L_multiplier, dt, "fire_L_multiplier");
    expect_grad(g.bias.fire_w1, in.bias.fire_w1, dt, "fire_w1");
    expect_grad(g.bias.fire_b1, in.bias.fire_b1, dt, "fire_b1");
    expect_grad(g.bias.fire_w2, in.bias.fire_w2, dt, "fire_w2");
    expect_grad(g.bias.fire_b2, in.bias.fire_b2, dt, "fire_b2");
  }
  if (in.dape.enabled) {
    expect_grad(g.dape.w1, in.dape.w1, dt, "dape w1");
    expect_grad(g.dape.b1, in.dape.b1, dt, "dape b1");
    expect_grad(g.dape.w2, in.dape.w2, dt, "dape w2");
    expect_grad(g.dape.b2, in.dape.b2, dt, "dape b2");
  }
}

}  // namespace dape
