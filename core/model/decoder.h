/*
 * Decoder: the GPT-NeoX-style model of DESIGN.md §1, forward and hand-written backward.
 *
 *   embed (+ learned positions) → L × [LN → QKV → (RoPE) → attention(S + B [+ f(S, B)]) → out
 *   proj → +residual → LN → fc1 → GELU → fc2 → +residual] → final LN → LM head → cross-entropy
 *
 * Written once against Ops: the same code runs in float32 for training, in float64 for
 * finite-difference checks, and on any backend.
 *
 * Memory. In training mode every layer keeps what its backward needs (residual input, LN
 * outputs and statistics, QKV after RoPE, attention output and log-sum-exp, the MLP's pre- and
 * post-GELU activations). In inference mode one layer's worth of buffers is reused by every
 * layer and the residual stream is updated in place, so evaluating at long lengths costs one
 * layer's activations plus the attention kernel's own memory. The LM head runs in row chunks
 * (at most ~32M logits at a time): a 50k vocabulary never materializes [tokens, vocab] logits,
 * and in training each chunk's logits are turned into their gradient in place and pushed through
 * the head's backward at once, so backward() starts from the final LayerNorm.
 */
#pragma once

#include <cstdint>
#include <vector>

#include "core/model/model_spec.h"
#include "core/model/param_store.h"
#include "kernels/ops.h"

namespace dape {

class Decoder {
 public:
  // Registers and allocates the parameters (with gradient buffers when `trainable`).
  Decoder(const ModelSpec& spec, Ops& ops, bool trainable = true);

  const ModelSpec& spec() const { return spec_; }
  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  Ops& ops() { return ops_; }

  void initialize(uint64_t seed) { params_.initialize(ops_, seed); }

  // Runs the model on `batch` sequences of `seq_len` tokens (host int32, [batch, seq_len]) and
  // returns Σ of the per-token cross-entropy losses. With training = true, activations are kept
  // for backward() and the loss gradient is scaled by grad_scale (the weight of each token's
  // loss in the objective, e.g. 1 / tokens per optimizer step).
  double forward(const int32_t* tokens, const int32_t* targets, int batch, int seq_len,
                 bool training, double grad_scale = 0.0);
  // Per-token losses of the last forward, [batch · seq_len] (downloaded on demand).
  std::vector<double> token_losses();
  // Accumulates the gradients of the last training forward into params().grads().
  void backward();
  // Bytes currently held in activation buffers.
  int64_t activation_bytes() const;
  // Model FLOPs per trained token at `seq_len` (6 × matmul parameters + the attention core,
  // causal, including f when DAPE is on): the numerator of achieved-FLOP/s figures.
  double training_flops_per_token(int seq_len) const;

 private:
  struct LayerWeights {
    Tensor ln1_w, ln1_b, qkv_w, qkv_b, out_w, out_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
    PositionBias bias;
    DapeMlp dape;
  };
  struct LayerActivations {
    DeviceBuffer ln1, ln1_mean, ln1_rstd, qkv, att, lse, x_mid, ln2, ln2_mean, ln2_rstd, fc1, gelu;
  };

  LayerWeights layer_tensors(int layer, bool grads) const;
  void ensure_buffers(int batch, int seq_len, bool training);
  AttentionInputs attention_inputs(const LayerWeights& w, const Tensor& qkv) const;
  AttentionGrads attention_grads(const LayerWeights& g) const;
  void lm_head(bool training, double grad_scale);

  ModelSpec spec_;
  Ops& ops_;
  ParamStore params_;
  std::vector<LayerWeights> weights_, weight_grads_;

  // Shapes the buffers were sized for.
  int batch_ = 0, seq_len_ = 0;
  bool training_buffers_ = false, have_training_forward_ = false;
  std::vector<DeviceBuffer> residual_;  // training: L + 1 buffers, inference: 1
  std::vector<LayerActivations> acts_;  // training: L, inference: 1
  DeviceBuffer tokens_, targets_, losses_, proj_, lnf_, lnf_mean_, lnf_rstd_, logits_;
  DeviceBuffer dlnf_, dres_, dsmall_, dbig_, dqkv_;
};

}  // namespace dape
