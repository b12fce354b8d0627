#include "core/model/decoder.h"

#include <algorithm>

#include "common/check.h"

namespace dape {

namespace {

// Logits held at once by the chunked LM head.
constexpr int64_t kLogitsPerChunk = int64_t{1} << 25;

// A view that starts `offset` elements into t and is described by `shape`; strided views (q, k
// and v inside the fused QKV buffer) extend past shape.numel() by design.
Tensor view_at(const Tensor& t, int64_t offset, Shape shape) {
  DAPE_CHECK(offset >= 0 && offset < t.numel(), "view offset {} outside {}", offset, t.shape.str());
  return Tensor(static_cast<char*>(t.data) + offset * dtype_size(t.dtype), t.dtype, shape);
}

// The learned attention parameters of a layer (the scheme's and f's) that are defined.
template <class LW>
std::vector<Tensor*> attention_parameters(LW& w) {
  std::vector<Tensor*> out;
  for (Tensor* t : {&w.bias.kerple_p, &w.bias.kerple_a, &w.bias.fire_c, &w.bias.fire_L_multiplier,
                    &w.bias.fire_w1, &w.bias.fire_b1, &w.bias.fire_w2, &w.bias.fire_b2, &w.dape.w1,
                    &w.dape.b1, &w.dape.w2, &w.dape.b2})
    if (t->defined()) out.push_back(t);
  return out;
}
template <class LW>
std::vector<const Tensor*> attention_parameters(const LW& w) {
  std::vector<const Tensor*> out;
  for (Tensor* t : attention_parameters(const_cast<LW&>(w))) out.push_back(t);
  return out;
}

}  // namespace

Decoder::Decoder(const ModelSpec& spec, Ops& ops, bool trainable, Communicator* tp)
    : spec_(spec), ops_(ops), tp_(spec.tp > 1 ? tp : nullptr) {
  DAPE_CHECK(spec_.tp == 1 || (tp && tp->size() == spec_.tp && tp->rank() == spec_.tp_rank),
             "a model cut over {} ranks (rank {}) needs that tensor-parallel group, got {}",
             spec_.tp, spec_.tp_rank,
             tp ? fmt::format("rank {} of {}", tp->rank(), tp->size()) : std::string("none"));
  if (!ops_.has_attention(spec_.attention))
    fail(
        "model.attention: '{}' attention is not available on the {} backend of this build; use "
        "'reference'",
        spec_.attention == AttentionImpl::fused ? "fused" : "reference", ops_.name());
  spec_.register_params(params_);
  params_.allocate(ops_, trainable);
  for (int l = 0; l < spec_.layers; ++l) {
    weights_.push_back(layer_tensors(l, false));
    if (trainable) weight_grads_.push_back(layer_tensors(l, true));
  }
  if (tp_ && trainable) {
    int64_t shares = 0;
    for (const Tensor* t : attention_parameters(weights_[0])) shares += t->numel();
    if (shares > 0) attn_grad_shares_ = ops_.float_buffer({shares});
  }
}

Decoder::LayerWeights Decoder::layer_tensors(int l, bool grads) const {
  auto get = [&](const std::string& rest) {
    const auto& v = params_.view(layer_param(l, rest));
    return grads ? v.grad : v.value;
  };
  auto maybe = [&](const std::string& rest) {
    return params_.has(layer_param(l, rest)) ? get(rest) : Tensor();
  };
  LayerWeights w;
  w.ln1_w = get("ln1.weight");
  w.ln1_b = get("ln1.bias");
  w.qkv_w = get("attn.qkv.weight");
  w.qkv_b = get("attn.qkv.bias");
  w.out_w = get("attn.out.weight");
  w.out_b = get("attn.out.bias");
  w.ln2_w = get("ln2.weight");
  w.ln2_b = get("ln2.bias");
  w.fc1_w = get("mlp.fc1.weight");
  w.fc1_b = get("mlp.fc1.bias");
  w.fc2_w = get("mlp.fc2.weight");
  w.fc2_b = get("mlp.fc2.bias");
  w.bias.scheme = spec_.position;
  w.bias.kerple_p = maybe("attn.kerple.p");
  w.bias.kerple_a = maybe("attn.kerple.a");
  w.bias.fire_c = maybe("attn.fire.c");
  w.bias.fire_L_multiplier = maybe("attn.fire.L_multiplier");
  w.bias.fire_w1 = maybe("attn.fire.w1");
  w.bias.fire_b1 = maybe("attn.fire.b1");
  w.bias.fire_w2 = maybe("attn.fire.w2");
  w.bias.fire_b2 = maybe("attn.fire.b2");
  w.bias.fire_L = static_cast<float>(spec_.fire_L);
  w.bias.fire_leaky_relu = spec_.fire_leaky_relu;
  w.dape.enabled = spec_.dape;
  w.dape.width = spec_.dape_width;
  w.dape.w1 = maybe("attn.dape.w1");
  w.dape.b1 = maybe("attn.dape.b1");
  w.dape.w2 = maybe("attn.dape.w2");
  w.dape.b2 = maybe("attn.dape.b2");
  return w;
}

void Decoder::ensure_buffers(int batch, int seq_len, bool training) {
  if (batch == batch_ && seq_len == seq_len_ && training == training_buffers_) return;
  // Free first, so the old and new buffers are never held together.
  residual_.clear();
  acts_.clear();
  for (auto* b :
       {&tokens_, &targets_, &losses_, &proj_, &lnf_, &lnf_mean_, &lnf_rstd_, &logits_, &dlnf_,
        &dres_, &dsmall_, &dbig_, &dqkv_, &qk_send_, &qk_all_, &dqk_full_, &ce_stats_, &ce_all_})
    b->reset();
  have_training_forward_ = false;

  const int64_t R = int64_t{batch} * seq_len, C = spec_.d_model, T = tp_size();
  const int64_t Cl = C / T, Hl = spec_.heads / T, F = spec_.mlp_hidden / T;
  const int64_t Vl = spec_.padded_vocab / T;
  const int n_layer_sets = training ? spec_.layers : 1;
  tokens_ = ops_.buffer(DType::i32, {R});
  targets_ = ops_.buffer(DType::i32, {R});
  losses_ = ops_.float_buffer({R});
  proj_ = ops_.float_buffer({R, C});
  for (int i = 0; i < (training ? spec_.layers + 1 : 1); ++i)
    residual_.push_back(ops_.float_buffer({R, C}));
  for (int l = 0; l < n_layer_sets; ++l) {
    LayerActivations a;
    a.ln1 = ops_.float_buffer({R, C});
    a.ln1_mean = ops_.float_buffer({R});
    a.ln1_rstd = ops_.float_buffer({R});
    a.qkv = ops_.float_buffer({R, 3 * Cl});
    a.att = ops_.float_buffer({R, Cl});
    a.lse = ops_.float_buffer({batch, Hl, seq_len});
    if (tp_) a.qk = ops_.float_buffer({R, 2 * C});
    if (training) a.x_mid = ops_.float_buffer({R, C});
    a.ln2 = ops_.float_buffer({R, C});
    a.ln2_mean = ops_.float_buffer({R});
    a.ln2_rstd = ops_.float_buffer({R});
    a.fc1 = ops_.float_buffer({R, F});
    a.gelu = ops_.float_buffer({R, F});
    acts_.push_back(std::move(a));
  }
  lnf_ = ops_.float_buffer({R, C});
  lnf_mean_ = ops_.float_buffer({R});
  lnf_rstd_ = ops_.float_buffer({R});
  const int64_t chunk = std::clamp<int64_t>(kLogitsPerChunk / Vl, 1, R);
  logits_ = ops_.float_buffer({chunk, Vl});
  if (tp_) {
    qk_send_ = ops_.float_buffer({R, 2 * Cl});
    qk_all_ = ops_.float_buffer({T * R * 2 * Cl});
    ce_stats_ = ops_.float_buffer({chunk, 3});
    ce_all_ = ops_.float_buffer({T * chunk * 3});
    if (training) dqk_full_ = ops_.float_buffer({R, 2 * C});
  }
  if (training) {
    dlnf_ = ops_.float_buffer({R, C});
    dres_ = ops_.float_buffer({R, C});
    dsmall_ = ops_.float_buffer({R, C});
    dbig_ = ops_.float_buffer({R, F});
    dqkv_ = ops_.float_buffer({R, 3 * Cl});
  }
  batch_ = batch;
  seq_len_ = seq_len;
  training_buffers_ = training;
}

int64_t Decoder::activation_bytes() const {
  int64_t total = 0;
  auto add = [&](const DeviceBuffer& b) {
    if (b.defined()) total += b.tensor().nbytes();
  };
  for (const auto& b : residual_) add(b);
  for (const auto& a : acts_)
    for (const auto* b : {&a.ln1, &a.ln1_mean, &a.ln1_rstd, &a.qkv, &a.att, &a.lse, &a.x_mid,
                          &a.ln2, &a.ln2_mean, &a.ln2_rstd, &a.fc1, &a.gelu, &a.qk})
      add(*b);
  for (const auto* b :
       {&tokens_, &targets_, &losses_, &proj_, &lnf_, &lnf_mean_, &lnf_rstd_, &logits_, &dlnf_,
        &dres_, &dsmall_, &dbig_, &dqkv_, &qk_send_, &qk_all_, &dqk_full_, &ce_stats_, &ce_all_})
    add(*b);
  return total;
}

AttentionInputs Decoder::attention_inputs(const LayerWeights& w, const LayerActivations& a) const {
  const int64_t C = spec_.d_model;
  AttentionInputs in;
  in.bias = w.bias;
  in.dape = w.dape;
  const Shape s{batch_, seq_len_, spec_.heads, spec_.head_dim};
  if (!tp_) {
    in.shape = {batch_, seq_len_, spec_.heads, spec_.head_dim, 3 * C};
    in.q = view_at(a.qkv, 0, s);
    in.k = view_at(a.qkv, C, s);
    in.v = view_at(a.qkv, 2 * C, s);
    return in;
  }
  // Every head's q and k from the gather; this rank's heads' v from its own projection.
  const int64_t Cl = local_width();
  const int Hl = spec_.heads / spec_.tp;
  in.shape = {batch_, seq_len_, spec_.heads, spec_.head_dim, 2 * C};
  in.shape.v_row_stride = 3 * Cl;
  in.shape.head_begin = Hl * spec_.tp_rank;
  in.shape.local_heads = Hl;
  in.q = view_at(a.qk, 0, s);
  in.k = view_at(a.qk, C, s);
  in.v = view_at(a.qkv, 2 * Cl, {batch_, seq_len_, Hl, spec_.head_dim});
  return in;
}

void Decoder::all_reduce_over_tp(const Tensor& x) const {
  if (tp_) tp_->all_reduce_sum(x);
}

void Decoder::gather_qk(LayerActivations& a) {
  const int64_t R = int64_t{batch_} * seq_len_, C = spec_.d_model, Cl = local_width();
  const int T = spec_.tp;
  // This rank's q and k are the first 2·Cl columns of its QKV rows.
  ops_.copy_2d(qk_send_, 2 * Cl, a.qkv, 3 * Cl, R, 2 * Cl);
  tp_->all_gather(qk_all_, qk_send_);
  for (int t = 0; t < T; ++t) {
    const Tensor piece = qk_all_.tensor().slice(t * R * 2 * Cl, {R, 2 * Cl});
    ops_.copy_2d(view_at(a.qk, t * Cl, {R, Cl}), 2 * C, piece, 2 * Cl, R, Cl);
    ops_.copy_2d(view_at(a.qk, C + t * Cl, {R, Cl}), 2 * C, view_at(piece, Cl, {R, Cl}), 2 * Cl, R,
                 Cl);
  }
}

void Decoder::scatter_dqk() {
  const int64_t R = int64_t{batch_} * seq_len_, C = spec_.d_model, Cl = local_width();
  const int T = spec_.tp;
  // Rank t's heads' columns of every head's dq and dk, rank-major, for the reduce-scatter.
  for (int t = 0; t < T; ++t) {
    const Tensor piece = qk_all_.tensor().slice(t * R * 2 * Cl, {R, 2 * Cl});
    ops_.copy_2d(piece, 2 * Cl, view_at(dqk_full_, t * Cl, {R, Cl}), 2 * C, R, Cl);
    ops_.copy_2d(view_at(piece, Cl, {R, Cl}), 2 * Cl, view_at(dqk_full_, C + t * Cl, {R, Cl}),
                 2 * C, R, Cl);
  }
  tp_->reduce_scatter_sum(qk_send_, qk_all_);
  ops_.copy_2d(dqkv_, 3 * Cl, qk_send_, 2 * Cl, R, 2 * Cl);
}

AttentionGrads Decoder::attention_grads(const LayerWeights& g) const {
  const int64_t C = spec_.d_model;
  const Shape s{batch_, seq_len_, spec_.heads, spec_.head_dim};
  AttentionGrads grads;
  grads.bias = g.bias;
  grads.dape = g.dape;
  if (!tp_) {
    grads.dq = view_at(dqkv_, 0, s);
    grads.dk = view_at(dqkv_, C, s);
    grads.dv = view_at(dqkv_, 2 * C, s);
    return grads;
  }
  const int64_t Cl = local_width();
  grads.dq = view_at(dqk_full_, 0, s);
  grads.dk = view_at(dqk_full_, C, s);
  grads.dv = view_at(dqkv_, 2 * Cl, {batch_, seq_len_, spec_.heads / spec_.tp, spec_.head_dim});
  return grads;
}

void Decoder::check_positions(int end) const {
  if (spec_.position == PositionScheme::learned && end > spec_.max_positions)
    fail("length {} exceeds model.max_positions = {} of the learned position scheme", end,
         spec_.max_positions);
}

double Decoder::forward(const int32_t* tokens, const int32_t* targets, int batch, int seq_len,
                        bool training, double grad_scale) {
  DAPE_CHECK(batch > 0 && seq_len > 0, "forward on batch {} × length {}", batch, seq_len);
  DAPE_CHECK(!training || params_.has_grads(), "training forward on a model built for evaluation");
  check_positions(seq_len);
  ensure_buffers(batch, seq_len, training);
  const int64_t R = int64_t{batch} * seq_len;
  ops_.copy_from_host(tokens_, tokens, DType::i32);
  ops_.copy_from_host(targets_, targets, DType::i32);
  forward_layers(training);
  lm_head(training, grad_scale);
  have_training_forward_ = training;

  std::vector<double> losses = token_losses();
  double sum = 0;
  for (int64_t r = 0; r < R; ++r) sum += losses[r];
  return sum;
}

void Decoder::forward_layers(bool training) {
  const Tensor wpe =
      spec_.position == PositionScheme::learned ? params_.value("pos_embed.weight") : Tensor();
  if (tp_) {
    // This rank's vocabulary rows (the position embedding added once, by rank 0), summed.
    ops_.embedding_forward(residual_[0], tokens_, params_.value("embed.weight"),
                           spec_.tp_rank == 0 ? wpe : Tensor(), seq_len_, 0, vocab_begin());
    all_reduce_over_tp(residual_[0]);
  } else {
    ops_.embedding_forward(residual_[0], tokens_, params_.value("embed.weight"), wpe, seq_len_, 0);
  }

  for (int l = 0; l < spec_.layers; ++l) {
    const LayerWeights& w = weights_[l];
    LayerActivations& a = acts_[training ? l : 0];
    const Tensor& x_in = residual_[training ? l : 0];
    const Tensor& x_out = residual_[training ? l + 1 : 0];
    // In inference mode the residual stream is updated in place.
    const Tensor& x_mid = training ? a.x_mid.tensor() : x_in;

    ops_.layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x_in, w.ln1_w, w.ln1_b);
    ops_.matmul_forward(a.qkv, a.ln1, w.qkv_w, w.qkv_b);
    if (tp_) gather_qk(a);
    AttentionInputs in = attention_inputs(w, a);
    if (spec_.position == PositionScheme::rope)
      ops_.rope_forward(in.q, in.k, in.shape, 0, spec_.rope_base);
    ops_.attention_forward(in, a.att, a.lse, spec_.attention);
    if (attention_observer_) attention_observer_(l, in, a.att);
    finish_layer(w, a, x_in, x_mid, x_out);
  }
  ops_.layernorm_forward(lnf_, lnf_mean_, lnf_rstd_, residual_.back(),
                         params_.value("final_ln.weight"), params_.value("final_ln.bias"));
}

void Decoder::finish_layer(const LayerWeights& w, LayerActivations& a, const Tensor& x_in,
                           const Tensor& x_mid, const Tensor& x_out) {
  ops_.matmul_forward(proj_, a.att, w.out_w, row_parallel_bias(w.out_b));
  all_reduce_over_tp(proj_);
  ops_.add(x_mid, x_in, proj_);
  ops_.layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, x_mid, w.ln2_w, w.ln2_b);
  ops_.matmul_forward(a.fc1, a.ln2, w.fc1_w, w.fc1_b);
  ops_.gelu_forward(a.gelu, a.fc1);
  ops_.matmul_forward(proj_, a.gelu, w.fc2_w, row_parallel_bias(w.fc2_b));
  all_reduce_over_tp(proj_);
  ops_.add(x_out, x_mid, proj_);
}

KvCache Decoder::make_cache(int batch, int capacity) {
  if (spec_.position == PositionScheme::learned && capacity > spec_.max_positions)
    fail(
        "a KV cache of {} tokens per sequence exceeds model.max_positions = {} of the learned "
        "position scheme",
        capacity, spec_.max_positions);
  return KvCache(ops_, spec_.layers, batch, capacity, spec_.heads, spec_.head_dim);
}

template <class T>
std::vector<T> Decoder::decode(const int32_t* tokens, int batch, int n_new, KvCache& cache) {
  DAPE_CHECK(batch > 0 && n_new > 0, "decode of batch {} × {} new tokens", batch, n_new);
  if (tp_) fail("decoding with a KV cache runs on one rank; this model is cut over {}", spec_.tp);
  DAPE_CHECK(cache.batch() == batch && cache.layers() == spec_.layers &&
                 cache.heads() == spec_.heads && cache.head_dim() == spec_.head_dim,
             "decode: a KV cache of batch {}, {} layers, {} heads of {} for batch {} of a model "
             "with {} layers, {} heads of {}",
             cache.batch(), cache.layers(), cache.heads(), cache.head_dim(), batch, spec_.layers,
             spec_.heads, spec_.head_dim);
  cache.check_room(n_new);
  const int past = cache.length();
  check_positions(past + n_new);
  ensure_buffers(batch, n_new, /*training=*/false);
  have_training_forward_ = false;
  const int64_t R = int64_t{batch} * n_new, C = spec_.d_model;
  ops_.copy_from_host(tokens_, tokens, DType::i32);
  const Tensor wpe =
      spec_.position == PositionScheme::learned ? params_.value("pos_embed.weight") : Tensor();
  const Tensor& x = residual_[0];  // updated in place, layer after layer
  ops_.embedding_forward(x, tokens_, params_.value("embed.weight"), wpe, n_new, past);

  LayerActivations& a = acts_[0];
  const Tensor q = a.qkv.tensor().slice(0, {R, C});  // the new tokens' queries, [R, C]
  AttentionInputs in;
  in.shape = {batch, n_new, spec_.heads, spec_.head_dim, C};
  in.shape.kv_len = past + n_new;
  in.shape.k_row_stride = in.shape.v_row_stride = C;
  in.shape.k_batch_stride = in.shape.v_batch_stride = int64_t{cache.capacity()} * C;
  in.q = q.reshape({batch, n_new, spec_.heads, spec_.head_dim});
  const AttentionShape one_sequence{1, n_new, spec_.heads, spec_.head_dim, C};
  for (int l = 0; l < spec_.layers; ++l) {
    const LayerWeights& w = weights_[l];
    ops_.layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, w.ln1_w, w.ln1_b);
    // The QKV projection by thirds: q for every new token, k and v into the cache's rows.
    ops_.matmul_forward(q, a.ln1, w.qkv_w.slice(0, {C, C}), w.qkv_b.slice(0, {C}));
    for (int b = 0; b < batch; ++b) {
      const Tensor x_b = a.ln1.tensor().slice(b * n_new * C, {n_new, C});
      const Tensor k_b = cache.next_keys(l, b, n_new);
      ops_.matmul_forward(k_b, x_b, w.qkv_w.slice(C * C, {C, C}), w.qkv_b.slice(C, {C}));
      ops_.matmul_forward(cache.next_values(l, b, n_new), x_b, w.qkv_w.slice(2 * C * C, {C, C}),
                          w.qkv_b.slice(2 * C, {C}));
      if (spec_.position == PositionScheme::rope)
        ops_.rope_forward(q.slice(b * n_new * C, {n_new, C}), k_b, one_sequence, past,
                          spec_.rope_base);
    }
    in.k = cache.keys(l);
    in.v = cache.values(l);
    in.bias = w.bias;
    in.dape = w.dape;
    ops_.attention_forward(in, a.att, a.lse, spec_.attention);
    finish_layer(w, a, x, x, x);
  }
  cache.advance(n_new);
  // Only each sequence's last token goes on: gathered into rows 0 … batch − 1 of proj_.
  for (int b = 0; b < batch; ++b)
    ops_.copy(proj_.tensor().slice(b * C, {C}), x.slice((b * n_new + n_new - 1) * C, {C}));
  const Tensor last = proj_.tensor().slice(0, {batch, C});
  ops_.layernorm_forward(lnf_.tensor().slice(0, {batch, C}), lnf_mean_.tensor().slice(0, {batch}),
                         lnf_rstd_.tensor().slice(0, {batch}), last,
                         params_.value("final_ln.weight"), params_.value("final_ln.bias"));
  return head_logits<T>(batch);
}

template <class T>
std::vector<T> Decoder::logits(const int32_t* tokens, int batch, int seq_len) {
  DAPE_CHECK(batch > 0 && seq_len > 0, "logits of batch {} × length {}", batch, seq_len);
  if (tp_) fail("whole logits are computed on one rank; this model is cut over {}", spec_.tp);
  check_positions(seq_len);
  ensure_buffers(batch, seq_len, /*training=*/false);
  have_training_forward_ = false;
  ops_.copy_from_host(tokens_, tokens, DType::i32);
  forward_layers(/*training=*/false);
  return head_logits<T>(int64_t{batch} * seq_len);
}

template <class T>
std::vector<T> Decoder::head_logits(int64_t rows) {
  const int64_t C = spec_.d_model, Vp = spec_.padded_vocab, V = spec_.vocab;
  const int64_t chunk = logits_.tensor().shape[0];
  const Tensor w = params_.value("lm_head.weight"), b = params_.value("lm_head.bias");
  std::vector<T> out(static_cast<size_t>(rows * V)), host;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    const Tensor logits = logits_.tensor().slice(0, {n, Vp});
    ops_.matmul_forward(logits, lnf_.tensor().slice(r0 * C, {n, C}), w, b);
    host.resize(static_cast<size_t>(n * Vp));
    ops_.copy_to_host(host.data(), dtype_of<T>(), logits);
    for (int64_t r = 0; r < n; ++r)
      std::copy(host.begin() + r * Vp, host.begin() + r * Vp + V, out.begin() + (r0 + r) * V);
  }
  return out;
}

template std::vector<float> Decoder::decode<float>(const int32_t*, int, int, KvCache&);
template std::vector<double> Decoder::decode<double>(const int32_t*, int, int, KvCache&);
template std::vector<float> Decoder::logits<float>(const int32_t*, int, int);
template std::vector<double> Decoder::logits<double>(const int32_t*, int, int);

void Decoder::lm_head(bool training, double grad_scale) {
  const int64_t R = int64_t{batch_} * seq_len_, C = spec_.d_model,
                Vp = spec_.padded_vocab / tp_size();
  const int64_t chunk = logits_.tensor().shape[0];
  const Tensor w = params_.value("lm_head.weight"), b = params_.value("lm_head.bias");
  for (int64_t r0 = 0; r0 < R; r0 += chunk) {
    const int64_t n = std::min(chunk, R - r0);
    const Tensor x = lnf_.tensor().slice(r0 * C, {n, C});
    const Tensor logits = logits_.tensor().slice(0, {n, Vp});
    ops_.matmul_forward(logits, x, w, b);
    const Tensor losses = losses_.tensor().slice(r0, {n}),
                 targets = targets_.tensor().slice(r0, {n});
    if (tp_) {
      // Each rank's (max, Σ exp, target logit) over its vocabulary rows, exchanged and combined.
      const Tensor stats = ce_stats_.tensor().slice(0, {n, 3});
      const Tensor all = ce_all_.tensor().slice(0, {tp_size() * n * 3});
      ops_.cross_entropy_slice_stats(stats, logits, targets, vocab_begin(), spec_.vocab);
      tp_->all_gather(all, stats);
      ops_.cross_entropy_from_slice_stats(losses, logits, all, targets, vocab_begin(), spec_.vocab,
                                          training ? grad_scale : 0.0);
    } else {
      ops_.cross_entropy(losses, logits, targets, spec_.vocab, training ? grad_scale : 0.0);
    }
    if (training) {
      ops_.matmul_backward(dlnf_.tensor().slice(r0 * C, {n, C}), params_.grad("lm_head.weight"),
                           params_.grad("lm_head.bias"), logits, x, w);
    }
  }
  if (training) {
    all_reduce_over_tp(dlnf_);  // every vocabulary slice's share of d lnf
    report_gradients("lm_head.");
  }
}

void Decoder::report_gradients(const std::string& prefix) const {
  if (!gradient_hook_) return;
  for (const auto& v : params_.views())
    if (v.spec.name.compare(0, prefix.size(), prefix) == 0) gradient_hook_(v.grad);
}

std::vector<double> Decoder::token_losses() {
  return download<double>(ops_, losses_);
}

void Decoder::backward() {
  DAPE_CHECK(have_training_forward_, "backward() without a preceding training forward()");
  const Tensor& dres = dres_;
  ops_.fill(dres, 0.0);
  ops_.layernorm_backward(dres, params_.grad("final_ln.weight"), params_.grad("final_ln.bias"),
                          dlnf_, residual_.back(), params_.value("final_ln.weight"), lnf_mean_,
                          lnf_rstd_);
  report_gradients("final_ln.");
  for (int l = spec_.layers - 1; l >= 0; --l) {
    const LayerWeights& w = weights_[l];
    const LayerWeights& g = weight_grads_[l];
    LayerActivations& a = acts_[l];
    // x_out = x_mid + fc2(gelu(fc1(ln2(x_mid)))): dres holds d x_out.
    ops_.matmul_backward(dbig_, g.fc2_w, g.fc2_b, dres, a.gelu, w.fc2_w);
    ops_.gelu_backward(dbig_, a.fc1, dbig_);
    ops_.matmul_backward(dsmall_, g.fc1_w, g.fc1_b, dbig_, a.ln2, w.fc1_w);
    all_reduce_over_tp(dsmall_);
    ops_.layernorm_backward(dres, g.ln2_w, g.ln2_b, dsmall_, a.x_mid, w.ln2_w, a.ln2_mean,
                            a.ln2_rstd);
    // x_mid = x_in + out(attention(qkv(ln1(x_in)))): dres now holds d x_mid.
    const Tensor datt = dsmall_.tensor().slice(0, a.att.tensor().shape);
    ops_.matmul_backward(datt, g.out_w, g.out_b, dres, a.att, w.out_w);
    const AttentionInputs in = attention_inputs(w, a);
    AttentionGrads grads = attention_grads(g);
    // Tensor parallel: this rank's shares of the attention parameters' gradients go to a
    // zeroed buffer, are summed over the ranks, then added to the gradients.
    std::vector<std::pair<Tensor, Tensor>> shares;  // (share, gradient)
    if (tp_ && attn_grad_shares_.defined()) {
      ops_.fill(attn_grad_shares_, 0.0);
      int64_t at = 0;
      for (Tensor* t : attention_parameters(grads)) {
        const Tensor share = attn_grad_shares_.tensor().slice(at, t->shape);
        shares.push_back({share, *t});
        *t = share;
        at += t->numel();
      }
    }
    ops_.attention_backward(in, a.att, a.lse, datt, grads, spec_.attention);
    if (!shares.empty()) {
      all_reduce_over_tp(attn_grad_shares_);
      for (const auto& [share, grad] : shares) ops_.add(grad, grad, share);
    }
    if (spec_.position == PositionScheme::rope)
      ops_.rope_backward(grads.dq, grads.dk, in.shape, 0, spec_.rope_base);
    if (tp_) scatter_dqk();
    ops_.matmul_backward(dsmall_, g.qkv_w, g.qkv_b, dqkv_, a.ln1, w.qkv_w);
    all_reduce_over_tp(dsmall_);
    ops_.layernorm_backward(dres, g.ln1_w, g.ln1_b, dsmall_, residual_[l], w.ln1_w, a.ln1_mean,
                            a.ln1_rstd);
    report_gradients(layer_param(l, ""));
  }
  const Tensor dwpe =
      spec_.position == PositionScheme::learned ? params_.grad("pos_embed.weight") : Tensor();
  ops_.embedding_backward(params_.grad("embed.weight"), dwpe, dres, tokens_, seq_len_, 0,
                          tp_ ? vocab_begin() : -1);
  report_gradients("embed.");
  report_gradients("pos_embed.");
}

double Decoder::training_flops_per_token(int seq_len) const {
  const double C = spec_.d_model, H = spec_.heads, D = spec_.head_dim;
  const double matmul_params =
      spec_.layers * (3 * C * C + C * C + 2 * C * spec_.mlp_hidden) + C * spec_.padded_vocab;
  // Causal: a token attends to (T + 1) / 2 keys on average.
  const double pairs = (seq_len + 1) / 2.0;
  double per_pair = 2 * 2 * H * D;  // Q·Kᵀ and P·V
  if (spec_.dape) per_pair += 2 * (2 * H * spec_.dape_width + spec_.dape_width * H);
  return 6 * matmul_params + 3 * spec_.layers * pairs * per_pair;
}

}  // namespace dape
