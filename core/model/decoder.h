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
 *
 * Tensor parallelism (DESIGN.md §3, Megatron style). Each of the T ranks holds H/T heads: the
 * column-parallel QKV projection gives this rank's q, k and v; q and k of every head are then
 * all-gathered, because DAPE's f mixes all heads' logits at each (i, j): every rank evaluates f
 * (and the bias scheme) for all heads and the softmax and P·V for its own heads only, so the
 * model is exactly the one-rank model. In backward the all-head dq and dk shares are
 * reduce-scattered back to their heads, and the shares of f's and the scheme's gradients
 * (replicated parameters) are all-reduced. The attention output projection and fc2 are
 * row-parallel (partial sums all-reduced; their biases added once), fc1 column-parallel, the
 * embedding and the LM head cut by vocabulary rows, with the cross-entropy combined from
 * per-slice statistics (max, sum of exponentials, target logit) so no rank sees another's
 * logits. Input gradients of the column-parallel layers are all-reduced before each LayerNorm's
 * backward. Decoding with a KV cache runs on one rank only.
 *
 * Decoding. decode() runs the model on a few new tokens per sequence at positions after those a
 * KvCache (core/model/kv_cache.h) holds: the new tokens' q comes from the query third of the QKV
 * weight, their k and v are computed straight into the cache's rows (RoPE at their absolute
 * positions), and attention reads every cached key through the cache's strides with kv_len =
 * cached + new, so its queries sit at the right positions for every bias scheme (and learned
 * positions embed at the offset). Only the last new token of each sequence goes through the LM
 * head. logits() is the plain full forward for scoring and for checking decode() against.
 */
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/model/kv_cache.h"
#include "core/model/model_spec.h"
#include "core/model/param_store.h"
#include "kernels/ops.h"
#include "parallel/comm.h"

namespace dape {

class Decoder {
 public:
  // Registers and allocates the parameters (with gradient buffers when `trainable`). Under
  // tensor parallelism (spec.tp > 1) `tp` is the group of spec.tp ranks that hold the model's
  // pieces; every forward and backward is then a collective over it.
  Decoder(const ModelSpec& spec, Ops& ops, bool trainable = true, Communicator* tp = nullptr);

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

  // A KV cache for `batch` sequences of up to `capacity` tokens each (prompt and generated).
  // Throws dape::Error when a learned-position model cannot reach that many positions.
  KvCache make_cache(int batch, int capacity);
  // Runs the model on `n_new` new tokens per sequence (host int32, [batch, n_new]) at positions
  // cache.length() … cache.length() + n_new − 1, attending to the cached tokens, and appends the
  // new tokens' keys and values to the cache. Returns the logits of each sequence's last new
  // token over the real vocabulary, [batch, vocab] (T: float or double). Inference mode.
  // Throws dape::Error when the cache is full or positions run past model.max_positions.
  template <class T>
  std::vector<T> decode(const int32_t* tokens, int batch, int n_new, KvCache& cache);
  // The logits of every position of `batch` sequences of `seq_len` tokens by a full forward
  // (no cache), [batch, seq_len, vocab] over the real vocabulary. Inference mode.
  template <class T>
  std::vector<T> logits(const int32_t* tokens, int batch, int seq_len);

  // Called with each parameter gradient (a view into params().grads()) as soon as backward has
  // finished it for this step, in the order they finish: the LM head's during forward, then the
  // final LayerNorm's, each layer's from the last to the first, the embeddings' last. For the
  // data-parallel all-reduce (GradientSync); an empty function turns it off.
  using GradientHook = std::function<void(const Tensor& grad)>;
  void set_gradient_hook(GradientHook hook) { gradient_hook_ = std::move(hook); }

  // Called in every full forward (forward(), logits()) with each layer's attention inputs (q and
  // k after RoPE, the scheme's and f's parameters) and its output [batch, seq_len, heads, D],
  // right after the attention core ran: for looking at what a layer attends to
  // (core/model/attention_map.h). The views are valid during the call only. An empty function
  // turns it off.
  using AttentionObserver =
      std::function<void(int layer, const AttentionInputs& in, const Tensor& out)>;
  void set_attention_observer(AttentionObserver observer) {
    attention_observer_ = std::move(observer);
  }

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
    DeviceBuffer qk;  // tensor parallel: every head's q and k, [R, 2C]
  };

  LayerWeights layer_tensors(int layer, bool grads) const;
  void ensure_buffers(int batch, int seq_len, bool training);
  AttentionInputs attention_inputs(const LayerWeights& w, const LayerActivations& a) const;
  // Tensor parallel: the pieces of the whole model this rank holds, and the collectives.
  int tp_size() const { return spec_.tp; }
  int64_t local_width() const { return spec_.d_model / spec_.tp; }
  int64_t vocab_begin() const { return spec_.padded_vocab / spec_.tp * spec_.tp_rank; }
  // A row-parallel layer's bias: added by rank 0 only, so that the sum over ranks adds it once.
  Tensor row_parallel_bias(const Tensor& b) const { return spec_.tp_rank == 0 ? b : Tensor(); }
  void all_reduce_over_tp(const Tensor& x) const;
  // q and k of this rank's heads (in a.qkv) → every head's q and k (a.qk).
  void gather_qk(LayerActivations& a);
  // Every head's dq, dk shares (dqk_full_) → the sum for this rank's heads, into dqkv_.
  void scatter_dqk();
  AttentionGrads attention_grads(const LayerWeights& g) const;
  void check_positions(int end) const;
  // Embedding and every layer for the tokens in tokens_, then the final LayerNorm into lnf_.
  void forward_layers(bool training);
  // A layer after its attention: output projection, residual, MLP, residual.
  void finish_layer(const LayerWeights& w, LayerActivations& a, const Tensor& x_in,
                    const Tensor& x_mid, const Tensor& x_out);
  void lm_head(bool training, double grad_scale);
  // The LM head on the first `rows` rows of lnf_, downloaded over the real vocabulary.
  template <class T>
  std::vector<T> head_logits(int64_t rows);

  // Reports every gradient whose parameter name starts with `prefix` to the hook.
  void report_gradients(const std::string& prefix) const;

  ModelSpec spec_;
  Ops& ops_;
  Communicator* tp_ = nullptr;
  ParamStore params_;
  GradientHook gradient_hook_;
  AttentionObserver attention_observer_;
  std::vector<LayerWeights> weights_, weight_grads_;

  // Shapes the buffers were sized for.
  int batch_ = 0, seq_len_ = 0;
  bool training_buffers_ = false, have_training_forward_ = false;
  std::vector<DeviceBuffer> residual_;  // training: L + 1 buffers, inference: 1
  std::vector<LayerActivations> acts_;  // training: L, inference: 1
  DeviceBuffer tokens_, targets_, losses_, proj_, lnf_, lnf_mean_, lnf_rstd_, logits_;
  DeviceBuffer dlnf_, dres_, dsmall_, dbig_, dqkv_;
  // Tensor parallel: staging for the q/k gather and the dq/dk reduce-scatter, every head's dq and
  // dk, the cross-entropy's slice statistics, and one layer's attention-parameter gradient shares.
  DeviceBuffer qk_send_, qk_all_, dqk_full_, ce_stats_, ce_all_, attn_grad_shares_;
};

}  // namespace dape
