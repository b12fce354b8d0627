/*
 * From AttentionInputs to the fused CUDA kernels' plain arguments (AttentionKernelParams): every
 * shape, stride, head range and parameter tensor is checked here, once, with a message that
 * says what is wrong; the kernels then trust the numbers. Also the shared-memory layout plan for
 * a device's limit.
 *
 * Plain C++ (no CUDA), inline, so that the launchers (attention_fused_args.cpp, CUDA builds) and
 * the host emulation of the kernels (tests/unit/attention_cuda_emulation_test.cpp, every build)
 * share it. Tensors are float32 and stay where they are: the pointers are taken as given (device
 * memory for the launchers, host memory for the emulation).
 *
 * Limits of the CUDA kernels (attention_tiling.h): H ≤ 32, D ≤ 128, f's width ≤ 64, g's width
 * ≤ 64; beyond them the call is refused with a dape::Error naming the value and the limit.
 */
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "common/check.h"
#include "kernels/attention.h"
#include "kernels/attention_tiling.h"
#include "kernels/cuda/attention_kernel_params.h"

namespace dape::cuda {

namespace args_detail {

inline void expect_f32(const Tensor& t, const char* what) {
  DAPE_CHECK(t.defined(), "CUDA attention: {} is undefined", what);
  DAPE_CHECK(t.dtype == DType::f32, "CUDA attention: {} holds {}; the CUDA kernels take float32",
             what, dtype_name(t.dtype));
}

// An activation view: at least `min_numel` elements (`expected` spells out the product).
inline void expect_activation(const Tensor& t, int64_t min_numel, const char* what,
                              const char* expected) {
  expect_f32(t, what);
  DAPE_CHECK(t.numel() >= min_numel,
             "CUDA attention: {} has shape {} ({} elements), fewer than {} = {}", what,
             t.shape.str(), t.numel(), expected, min_numel);
}

// A parameter (or its gradient): exactly `numel` elements.
inline void expect_param(const Tensor& t, int64_t numel, const char* what,
                         const std::string& expected) {
  expect_f32(t, what);
  DAPE_CHECK(t.numel() == numel, "CUDA attention: {} has shape {} ({} elements); expected {}", what,
             t.shape.str(), t.numel(), expected);
}

inline void expect_strides(const char* what, int64_t row_field, int64_t row, int64_t batch_field,
                           int64_t batch, int64_t width, const char* width_name, int B) {
  DAPE_CHECK(row_field >= 0 && row >= width,
             "CUDA attention: {}'s row stride {} is shorter than a token's {} = {}", what, row,
             width_name, width);
  DAPE_CHECK(batch_field >= 0 && (B == 1 || batch >= width),
             "CUDA attention: {}'s batch stride {} is shorter than a token's {} = {}", what, batch,
             width_name, width);
}

}  // namespace args_detail

// The kernels' arguments for `in` (inputs only: no outputs, gradients or layout yet).
inline AttentionKernelParams attention_kernel_inputs(const AttentionInputs& in) {
  namespace tiling = dape::attention_tiling;
  using namespace args_detail;
  const AttentionShape& s = in.shape;
  DAPE_CHECK(s.batch >= 1 && s.seq_len >= 1 && s.heads >= 1 && s.head_dim >= 1,
             "CUDA attention: sizes must be positive, got B={} N={} H={} D={}", s.batch, s.seq_len,
             s.heads, s.head_dim);
  DAPE_CHECK(s.kv_len >= 0 && s.keys() >= s.seq_len,
             "CUDA attention: kv_len {} is shorter than seq_len {} (the queries are the last "
             "seq_len of the keys' positions)",
             s.kv_len, s.seq_len);
  DAPE_CHECK(s.head_begin >= 0 && s.local_heads >= 0 && s.head_begin + s.local() <= s.heads,
             "CUDA attention: the local head range [{}, {}) (head_begin {}, local_heads {}) is "
             "not inside the {} heads [0, {})",
             s.head_begin, s.head_begin + s.local(), s.head_begin, s.local_heads, s.heads, s.heads);
  if (s.heads > tiling::kMaxHeads)
    fail(
        "CUDA fused attention: {} heads; the kernels take at most {} (one thread block holds "
        "every head's logits of a tile, since DAPE's f mixes them)",
        s.heads, tiling::kMaxHeads);
  if (s.head_dim > tiling::kMaxHeadDim)
    fail(
        "CUDA fused attention: head dimension D = {} is not supported; the kernels take any D "
        "from 1 to {}",
        s.head_dim, tiling::kMaxHeadDim);
  // Grid sizes and tile indices are int: B · blocks of 16 rows must fit.
  const int64_t blocks =
      int64_t{s.batch} * std::max(tiling::query_blocks(s.seq_len), tiling::key_tiles(s.keys()));
  DAPE_CHECK(blocks <= std::numeric_limits<int>::max() && s.keys() <= (1 << 30),
             "CUDA attention: B = {}, kv_len = {} give {} thread blocks, more than a grid holds",
             s.batch, s.keys(), blocks);

  AttentionKernelParams p;
  p.B = s.batch;
  p.N = s.seq_len;
  p.M = s.keys();
  p.H = s.heads;
  p.Hl = s.local();
  p.h0 = s.head_begin;
  p.D = s.head_dim;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.D)));
  p.q_row = s.q_stride();
  p.q_batch = s.q_batch();
  p.k_row = s.k_stride();
  p.k_batch = s.k_batch();
  p.v_row = s.v_stride();
  p.v_batch = s.v_batch();
  const int64_t HD = int64_t{p.H} * p.D, HlD = int64_t{p.Hl} * p.D;
  DAPE_CHECK(p.q_row >= HD,
             "CUDA attention: qkv_row_stride {} (q's row stride) is shorter than a token's "
             "H*D = {}",
             p.q_row, HD);
  expect_strides("k", s.k_row_stride, p.k_row, s.k_batch_stride, p.k_batch, HD, "H*D", p.B);
  expect_strides("v", s.v_row_stride, p.v_row, s.v_batch_stride, p.v_batch, HlD,
                 "local heads' Hl*D", p.B);
  expect_activation(in.q, int64_t{p.B} * p.N * HD, "q", "B*N*H*D");
  expect_activation(in.k, int64_t{p.B} * p.M * HD, "k", "B*kv_len*H*D");
  expect_activation(in.v, int64_t{p.B} * p.M * HlD, "v", "B*kv_len*Hl*D");
  p.q = in.q.ptr<float>();
  p.k = in.k.ptr<float>();
  p.v = in.v.ptr<float>();

  const std::string H = std::to_string(p.H);
  switch (in.bias.scheme) {
    case PositionScheme::none:
    case PositionScheme::learned:
    case PositionScheme::rope:
      p.bias = BiasKind::none;
      break;
    case PositionScheme::alibi:
      p.bias = BiasKind::alibi;
      break;
    case PositionScheme::kerple:
      p.bias = BiasKind::kerple;
      expect_param(in.bias.kerple_p, p.H, "kerple_p", "[" + H + "]");
      expect_param(in.bias.kerple_a, p.H, "kerple_a", "[" + H + "]");
      p.kerple_p = in.bias.kerple_p.ptr<float>();
      p.kerple_a = in.bias.kerple_a.ptr<float>();
      break;
    case PositionScheme::fire: {
      p.bias = BiasKind::fire;
      const PositionBias& f = in.bias;
      DAPE_CHECK(f.fire_b1.defined() && f.fire_b1.numel() >= 1,
                 "CUDA attention: fire_b1 must be defined with g's width W >= 1 elements");
      if (f.fire_b1.numel() > tiling::kMaxFireWidth)
        fail("CUDA fused attention: FIRE's g has width {}; the kernels take at most {}",
             f.fire_b1.numel(), tiling::kMaxFireWidth);
      p.G = static_cast<int>(f.fire_b1.numel());
      const std::string G = std::to_string(p.G);
      expect_param(f.fire_c, 1, "fire_c", "a scalar");
      expect_param(f.fire_L_multiplier, 1, "fire_L_multiplier", "a scalar");
      expect_param(f.fire_w1, p.G, "fire_w1", "[" + G + ", 1] (W taken from fire_b1)");
      expect_param(f.fire_b1, p.G, "fire_b1", "[" + G + "]");
      expect_param(f.fire_w2, int64_t{p.H} * p.G, "fire_w2", "[" + H + ", " + G + "]");
      expect_param(f.fire_b2, p.H, "fire_b2", "[" + H + "]");
      DAPE_CHECK(std::isfinite(f.fire_L), "CUDA attention: fire_L must be finite, got {}",
                 f.fire_L);
      p.fire_c = f.fire_c.ptr<float>();
      p.fire_mult = f.fire_L_multiplier.ptr<float>();
      p.fire_w1 = f.fire_w1.ptr<float>();
      p.fire_b1 = f.fire_b1.ptr<float>();
      p.fire_w2 = f.fire_w2.ptr<float>();
      p.fire_b2 = f.fire_b2.ptr<float>();
      p.fire_L = f.fire_L;
      p.fire_leaky = f.fire_leaky_relu;
      break;
    }
  }
  p.dape = in.dape.enabled;
  if (p.dape) {
    p.W = in.dape.width;
    DAPE_CHECK(p.W >= 1, "CUDA attention: DAPE's mlp width must be at least 1, got {}", p.W);
    if (p.W > tiling::kMaxWidth)
      fail("CUDA fused attention: DAPE's mlp width {} is above the kernels' limit of {}", p.W,
           tiling::kMaxWidth);
    const std::string W = std::to_string(p.W), H2 = std::to_string(2 * p.H);
    expect_param(in.dape.w1, int64_t{p.W} * 2 * p.H, "dape w1", "[" + W + ", " + H2 + "]");
    expect_param(in.dape.b1, p.W, "dape b1", "[" + W + "]");
    expect_param(in.dape.w2, int64_t{p.H} * p.W, "dape w2", "[" + H + ", " + W + "]");
    expect_param(in.dape.b2, p.H, "dape b2", "[" + H + "]");
    p.w1 = in.dape.w1.ptr<float>();
    p.b1 = in.dape.b1.ptr<float>();
    p.w2 = in.dape.w2.ptr<float>();
    p.b2 = in.dape.b2.ptr<float>();
  }
  p.grad = attention_tiling::make_grad_layout(p.dape, p.W, p.H, p.Hl, p.bias == BiasKind::kerple,
                                              p.bias == BiasKind::fire, p.G);
  return p;
}

// The forward's outputs: out [B, N, Hl, D] and lse [B, Hl, N].
inline void set_forward_outputs(AttentionKernelParams* p, const Tensor& out, const Tensor& lse) {
  using namespace args_detail;
  expect_param(out, int64_t{p->B} * p->N * p->Hl * p->D, "out", "B*N*Hl*D elements");
  expect_param(lse, int64_t{p->B} * p->Hl * p->N, "lse", "B*Hl*N elements");
  p->out = out.ptr<float>();
  p->lse = lse.ptr<float>();
}

// The backward's inputs (the forward's out and lse, dout) and outputs (dq, dk, dv overwritten;
// the parameter gradients accumulated).
inline void set_backward_tensors(AttentionKernelParams* p, const AttentionInputs& in,
                                 const Tensor& out, const Tensor& lse, const Tensor& dout,
                                 const AttentionGrads& g) {
  using namespace args_detail;
  const int64_t HD = int64_t{p->H} * p->D, HlD = int64_t{p->Hl} * p->D;
  expect_param(out, int64_t{p->B} * p->N * HlD, "out", "B*N*Hl*D elements");
  expect_param(lse, int64_t{p->B} * p->Hl * p->N, "lse", "B*Hl*N elements");
  expect_param(dout, int64_t{p->B} * p->N * HlD, "dout", "B*N*Hl*D elements");
  expect_activation(g.dq, int64_t{p->B} * p->N * HD, "dq", "B*N*H*D");
  expect_activation(g.dk, int64_t{p->B} * p->M * HD, "dk", "B*kv_len*H*D");
  expect_activation(g.dv, int64_t{p->B} * p->M * HlD, "dv", "B*kv_len*Hl*D");
  p->saved_out = out.ptr<float>();
  p->saved_lse = lse.ptr<float>();
  p->dout = dout.ptr<float>();
  p->dq = g.dq.ptr<float>();
  p->dk = g.dk.ptr<float>();
  p->dv = g.dv.ptr<float>();
  auto grad_of = [](const Tensor& grad, const Tensor& param, const char* what) {
    expect_param(grad, param.numel(), what,
                 "the parameter's " + std::to_string(param.numel()) + " elements");
    return grad.ptr<float>();
  };
  if (p->bias == BiasKind::kerple) {
    p->grad_kerple_p = grad_of(g.bias.kerple_p, in.bias.kerple_p, "the gradient of kerple_p");
    p->grad_kerple_a = grad_of(g.bias.kerple_a, in.bias.kerple_a, "the gradient of kerple_a");
  } else if (p->bias == BiasKind::fire) {
    p->grad_fire_c = grad_of(g.bias.fire_c, in.bias.fire_c, "the gradient of fire_c");
    p->grad_fire_mult = grad_of(g.bias.fire_L_multiplier, in.bias.fire_L_multiplier,
                                "the gradient of fire_L_multiplier");
    p->grad_fire_w1 = grad_of(g.bias.fire_w1, in.bias.fire_w1, "the gradient of fire_w1");
    p->grad_fire_b1 = grad_of(g.bias.fire_b1, in.bias.fire_b1, "the gradient of fire_b1");
    p->grad_fire_w2 = grad_of(g.bias.fire_w2, in.bias.fire_w2, "the gradient of fire_w2");
    p->grad_fire_b2 = grad_of(g.bias.fire_b2, in.bias.fire_b2, "the gradient of fire_b2");
  }
  if (p->dape) {
    p->grad_w1 = grad_of(g.dape.w1, in.dape.w1, "the gradient of dape w1");
    p->grad_b1 = grad_of(g.dape.b1, in.dape.b1, "the gradient of dape b1");
    p->grad_w2 = grad_of(g.dape.w2, in.dape.w2, "the gradient of dape w2");
    p->grad_b2 = grad_of(g.dape.b2, in.dape.b2, "the gradient of dape b2");
  }
}

// What the shared-memory layout depends on.
inline attention_tiling::TileDims tile_dims(const AttentionKernelParams& p, bool bf16) {
  attention_tiling::TileDims d;
  d.H = p.H;
  d.Hl = p.Hl;
  d.D = p.D;
  d.W = p.dape ? p.W : 0;
  d.G = p.bias == BiasKind::fire ? p.G : 0;
  d.kerple = p.bias == BiasKind::kerple;
  d.fire = p.bias == BiasKind::fire;
  d.bf16 = bf16;
  return d;
}

// The layout of `kernel` for a device with `smem_limit` bytes of shared memory per block.
inline attention_tiling::TileLayout plan_layout(attention_tiling::TileKernel kernel,
                                                const AttentionKernelParams& p, bool bf16,
                                                int64_t smem_limit) {
  attention_tiling::TileLayout L;
  if (!attention_tiling::plan_tile_layout(kernel, tile_dims(p, bf16), p.grad.total, smem_limit,
                                          &L)) {
    const char* names[] = {"forward", "dq", "dk/dv"};
    fail(
        "CUDA fused attention: the {} kernel's tiles do not fit in the device's {} bytes of "
        "shared memory per block (H = {}, local heads {}, D = {}, DAPE width {}, FIRE width "
        "{}, {})",
        names[static_cast<int>(kernel)], smem_limit, p.H, p.Hl, p.D, p.W, p.G,
        bf16 ? "bf16" : "fp32");
  }
  return L;
}

}  // namespace dape::cuda
