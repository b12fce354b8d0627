/*
 * From AttentionInputs to the fused CUDA kernels' plain arguments (AttentionKernelParams). The
 * arguments are checked by check_attention_inputs / check_attention_grads
 * (kernels/attention_checks.h), the rules every attention implementation shares; here only the
 * CUDA kernels' own limits are added. The kernels then trust the numbers. Also the shared-memory
 * layout plan for a device's limit.
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
#include "kernels/attention_checks.h"
#include "kernels/attention_tiling.h"
#include "kernels/cuda/attention_kernel_params.h"

namespace dape::cuda {

namespace args_detail {

inline void expect_f32(const Tensor& t, const char* what) {
  DAPE_CHECK(t.defined(), "CUDA attention: {} is undefined", what);
  DAPE_CHECK(t.dtype == DType::f32, "CUDA attention: {} holds {}; the CUDA kernels take float32",
             what, dtype_name(t.dtype));
}

// A parameter (or its gradient): exactly `numel` elements.
inline void expect_param(const Tensor& t, int64_t numel, const char* what,
                         const std::string& expected) {
  expect_f32(t, what);
  DAPE_CHECK(t.numel() == numel, "CUDA attention: {} has shape {} ({} elements); expected {}", what,
             t.shape.str(), t.numel(), expected);
}

}  // namespace args_detail

// The kernels' arguments for `in` (inputs only: no outputs, gradients or layout yet).
inline AttentionKernelParams attention_kernel_inputs(const AttentionInputs& in) {
  namespace tiling = dape::attention_tiling;
  using namespace args_detail;
  const AttentionShape& s = in.shape;
  check_attention_inputs(in, DType::f32);
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
  p.q = in.q.ptr<float>();
  p.k = in.k.ptr<float>();
  p.v = in.v.ptr<float>();

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
      p.kerple_p = in.bias.kerple_p.ptr<float>();
      p.kerple_a = in.bias.kerple_a.ptr<float>();
      break;
    case PositionScheme::fire: {
      p.bias = BiasKind::fire;
      const PositionBias& f = in.bias;
      if (f.fire_b1.numel() > tiling::kMaxFireWidth)
        fail("CUDA fused attention: FIRE's g has width {}; the kernels take at most {}",
             f.fire_b1.numel(), tiling::kMaxFireWidth);
      p.G = static_cast<int>(f.fire_b1.numel());
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
    if (p.W > tiling::kMaxWidth)
      fail("CUDA fused attention: DAPE's mlp width {} is above the kernels' limit of {}", p.W,
           tiling::kMaxWidth);
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
  const int64_t HlD = int64_t{p->Hl} * p->D;
  expect_param(out, int64_t{p->B} * p->N * HlD, "out", "B*N*Hl*D elements");
  expect_param(lse, int64_t{p->B} * p->Hl * p->N, "lse", "B*Hl*N elements");
  expect_param(dout, int64_t{p->B} * p->N * HlD, "dout", "B*N*Hl*D elements");
  check_attention_grads(in, g, DType::f32);
  p->saved_out = out.ptr<float>();
  p->saved_lse = lse.ptr<float>();
  p->dout = dout.ptr<float>();
  p->dq = g.dq.ptr<float>();
  p->dk = g.dk.ptr<float>();
  p->dv = g.dv.ptr<float>();
  if (p->bias == BiasKind::kerple) {
    p->grad_kerple_p = g.bias.kerple_p.ptr<float>();
    p->grad_kerple_a = g.bias.kerple_a.ptr<float>();
  } else if (p->bias == BiasKind::fire) {
    p->grad_fire_c = g.bias.fire_c.ptr<float>();
    p->grad_fire_mult = g.bias.fire_L_multiplier.ptr<float>();
    p->grad_fire_w1 = g.bias.fire_w1.ptr<float>();
    p->grad_fire_b1 = g.bias.fire_b1.ptr<float>();
    p->grad_fire_w2 = g.bias.fire_w2.ptr<float>();
    p->grad_fire_b2 = g.bias.fire_b2.ptr<float>();
  }
  if (p->dape) {
    p->grad_w1 = g.dape.w1.ptr<float>();
    p->grad_b1 = g.dape.b1.ptr<float>();
    p->grad_w2 = g.dape.w2.ptr<float>();
    p->grad_b2 = g.dape.b2.ptr<float>();
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
