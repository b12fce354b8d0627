/*
 * Ops: every numeric operation the model needs, forward and backward, on one device.
 *
 * The model is written once against this interface; a backend (CPU today, CUDA next) supplies
 * the memory and the kernels. A backend computes in one floating type, float_dtype(): float32
 * for training, float64 on the CPU for gradient checks against finite differences. Token ids
 * are int32.
 *
 * Conventions, shared by every backend:
 *   - Tensors are dense row-major views (kernels/tensor.h). Linear weights are PyTorch-style
 *     [out, in]; y = x Wᵀ + b.
 *   - Backward functions *accumulate* (+=) into parameter gradients, so gradient accumulation
 *     over micro-batches needs no extra buffer. Activation gradients are overwritten unless the
 *     function says otherwise (layernorm_backward accumulates dx into the residual stream).
 *   - Where an output may alias an input, the function says so.
 *   - Every call is ordered after the previous one on this Ops; synchronize() waits for all.
 *   - Results are deterministic for a fixed thread count: reductions run in a fixed order.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/tensor.h"

namespace dape {

struct AdamWHyper {
  double lr = 0;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0;  // decoupled: p -= lr * weight_decay * p
  int64_t step = 1;         // 1-based, for bias correction
};

class Ops {
 public:
  virtual ~Ops() = default;

  virtual std::string name() const = 0;
  // The floating type of parameters, activations and gradients on this backend.
  virtual DType float_dtype() const = 0;
  virtual void synchronize() {}

  // ---- memory ----------------------------------------------------------------------------
  virtual void* allocate(int64_t bytes) = 0;
  virtual void deallocate(void* p) = 0;
  DeviceBuffer buffer(DType t, Shape s) { return DeviceBuffer(this, t, s); }
  DeviceBuffer float_buffer(Shape s) { return DeviceBuffer(this, float_dtype(), s); }
  // Host <-> device copies; the host side holds `host_dtype` (f32, f64 or i32) and values are
  // converted to and from the tensor's dtype.
  virtual void copy_from_host(const Tensor& dst, const void* src, DType host_dtype) = 0;
  virtual void copy_to_host(void* dst, DType host_dtype, const Tensor& src) = 0;
  // Device -> device copy of equal element counts and dtypes.
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  // A block of rows × cols elements between two row-strided layouts of one dtype:
  // dst[r · dst_stride + c] = src[r · src_stride + c] (from the tensors' data pointers). For
  // tensor parallelism: packing column blocks for collectives and unpacking them.
  virtual void copy_2d(const Tensor& dst, int64_t dst_stride, const Tensor& src, int64_t src_stride,
                       int64_t rows, int64_t cols) = 0;

  // ---- elementwise and reductions ----------------------------------------------------------
  virtual void fill(const Tensor& x, double value) = 0;
  virtual void scale(const Tensor& x, double factor) = 0;
  // out = a + b (out may alias a or b).
  virtual void add(const Tensor& out, const Tensor& a, const Tensor& b) = 0;
  // x = max(x, lo).
  virtual void clamp_min(const Tensor& x, double lo) = 0;
  // Σ x², accumulated in double in a fixed order.
  virtual double sum_squares(const Tensor& x) = 0;

  // ---- embedding ---------------------------------------------------------------------------
  // out[r, :] = wte[tokens[r], :] (+ wpe[pos_offset + r % seq_len, :] when wpe is defined).
  // out [R, C], tokens [R] (R = batch * seq_len), wte [V, C], wpe [P, C].
  // vocab_begin < 0: wte is the whole table (ids outside it are a bug, reported). Vocabulary-
  // parallel, vocab_begin >= 0: wte holds the rows [vocab_begin, vocab_begin + wte.rows) of a
  // table split over ranks; a token outside them gives a zero row (plus wpe), so the sum over
  // the ranks holding the slices is the whole embedding.
  virtual void embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& wte,
                                 const Tensor& wpe, int seq_len, int pos_offset,
                                 int64_t vocab_begin = -1) = 0;
  // dwte (and dwpe if defined) += the scatter of dout; tokens outside wte's rows add nothing to
  // dwte.
  virtual void embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                                  const Tensor& tokens, int seq_len, int pos_offset,
                                  int64_t vocab_begin = -1) = 0;

  // ---- layer norm (eps 1e-5) -----------------------------------------------------------------
  // x, out [R, C]; w, b [C]; mean, rstd [R] saved for backward.
  virtual void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                                 const Tensor& x, const Tensor& w, const Tensor& b) = 0;
  // dx += ..., dw += ..., db += ...
  virtual void layernorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                                  const Tensor& dout, const Tensor& x, const Tensor& w,
                                  const Tensor& mean, const Tensor& rstd) = 0;

  // ---- linear layers -------------------------------------------------------------------------
  // out [M, N] = x [M, K] · w [N, K]ᵀ + b [N] (b may be undefined).
  virtual void matmul_forward(const Tensor& out, const Tensor& x, const Tensor& w,
                              const Tensor& b) = 0;
  // dx = dout · w (overwritten, or += when accumulate_dx; skipped when dx is undefined);
  // dw += doutᵀ · x; db += Σ_rows dout (skipped when undefined).
  virtual void matmul_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                               const Tensor& dout, const Tensor& x, const Tensor& w,
                               bool accumulate_dx = false) = 0;

  // ---- GELU (exact, erf) ---------------------------------------------------------------------
  virtual void gelu_forward(const Tensor& out, const Tensor& x) = 0;
  // dx = dout * gelu'(x); dx may alias dout.
  virtual void gelu_backward(const Tensor& dx, const Tensor& x, const Tensor& dout) = 0;

  // ---- rotary position embedding (full head dim, NeoX rotate_half) ---------------------------
  // Rotates q and k in place; position of token t is pos_offset + t. shape gives B, N, H, D and
  // the row stride of q and k.
  virtual void rope_forward(const Tensor& q, const Tensor& k, const AttentionShape& shape,
                            int pos_offset, double base) = 0;
  // The transpose: maps gradients w.r.t. rotated q, k to gradients w.r.t. unrotated, in place.
  virtual void rope_backward(const Tensor& dq, const Tensor& dk, const AttentionShape& shape,
                             int pos_offset, double base) = 0;

  // ---- attention core (kernels/attention.h) --------------------------------------------------
  // Whether this backend implements `impl` (the reference is always there).
  virtual bool has_attention(AttentionImpl impl) const = 0;
  // out [B, N, Hl, D]; lse [B, Hl, N] (log-sum-exp of each softmax row, saved for backward),
  // over the local heads (all H unless in.shape gives a head range).
  virtual void attention_forward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                                 AttentionImpl impl) = 0;
  virtual void attention_backward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                                  const Tensor& dout, const AttentionGrads& grads,
                                  AttentionImpl impl) = 0;

  // ---- fused softmax cross-entropy -----------------------------------------------------------
  // logits [R, Vp] whose first `vocab` columns are real (the rest is padding, ignored);
  // targets [R] int32 in [0, vocab). losses[r] = -log softmax(logits[r, :vocab])[targets[r]].
  // When grad_scale != 0, logits are overwritten by their gradient for a total loss of
  // grad_scale * Σ_r losses[r]: grad_scale * (softmax - onehot), and 0 in the padding.
  virtual void cross_entropy(const Tensor& losses, const Tensor& logits, const Tensor& targets,
                             int vocab, double grad_scale) = 0;
  // Vocabulary-parallel cross-entropy, in two halves around a gather over the S ranks that hold
  // the vocabulary's slices. logits [R, Vl] are the columns [vocab_begin, vocab_begin + Vl) of
  // the whole [R, Vp] logits; columns >= vocab are padding. stats [R, 3] per row: the max over
  // this slice's real columns (−inf when it has none), Σ exp(logit − that max) over them (0 when
  // none), and the target's logit when the target lies in this slice, else 0.
  virtual void cross_entropy_slice_stats(const Tensor& stats, const Tensor& logits,
                                         const Tensor& targets, int64_t vocab_begin, int vocab) = 0;
  // all_stats [S, R, 3]: every slice's stats, slice-major (as all_gather gives them). With
  // M = max over slices of their max, losses[r] = M + log Σ_s sum_s · exp(max_s − M) − Σ_s
  // target_s: the whole row's cross-entropy. When grad_scale != 0, this slice's logits are
  // overwritten by grad_scale · (softmax − onehot) over its columns (0 in the padding), exactly
  // the slice of what cross_entropy writes for the whole row.
  virtual void cross_entropy_from_slice_stats(const Tensor& losses, const Tensor& logits,
                                              const Tensor& all_stats, const Tensor& targets,
                                              int64_t vocab_begin, int vocab,
                                              double grad_scale) = 0;

  // ---- optimizer -----------------------------------------------------------------------------
  // AdamW (PyTorch semantics, decoupled weight decay) over equal-length params, grads, m, v.
  virtual void adamw(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v,
                     const AdamWHyper& h) = 0;
};

// Host-side conveniences.
template <class T>
void upload(Ops& ops, const Tensor& dst, const std::vector<T>& src) {
  DAPE_CHECK(static_cast<int64_t>(src.size()) == dst.numel(), "upload of {} values into {}",
             src.size(), dst.shape.str());
  ops.copy_from_host(dst, src.data(), dtype_of<T>());
}
template <class T>
std::vector<T> download(Ops& ops, const Tensor& src) {
  std::vector<T> out(src.numel());
  ops.copy_to_host(out.data(), dtype_of<T>(), src);
  return out;
}

}  // namespace dape
