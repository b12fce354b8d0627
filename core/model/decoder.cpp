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

}  // namespace

Decoder::Decoder(const ModelSpec& spec, Ops& ops, bool trainable) : spec_(spec), ops_(ops) {
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
  for (auto* b : {&tokens_, &targets_, &losses_, &proj_, &lnf_, &lnf_mean_, &lnf_rstd_, &logits_,
                  &dlnf_, &dres_, &dsmall_, &dbig_, &dqkv_})
    b->reset();
  have_training_forward_ = false;

  const int64_t R = int64_t{batch} * seq_len, C = spec_.d_model, H = spec_.heads;
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
    a.qkv = ops_.float_buffer({R, 3 * C});
    a.att = ops_.float_buffer({R, C});
    a.lse = ops_.float_buffer({batch, H, seq_len});
    if (training) a.x_mid = ops_.float_buffer({R, C});
    a.ln2 = ops_.float_buffer({R, C});
    a.ln2_mean = ops_.float_buffer({R});
    a.ln2_rstd = ops_.float_buffer({R});
    a.fc1 = ops_.float_buffer({R, spec_.mlp_hidden});
    a.gelu = ops_.float_buffer({R, spec_.mlp_hidden});
    acts_.push_back(std::move(a));
  }
  lnf_ = ops_.float_buffer({R, C});
  lnf_mean_ = ops_.float_buffer({R});
  lnf_rstd_ = ops_.float_buffer({R});
  const int64_t chunk = std::clamp<int64_t>(kLogitsPerChunk / spec_.padded_vocab, 1, R);
  logits_ = ops_.float_buffer({chunk, spec_.padded_vocab});
  if (training) {
    dlnf_ = ops_.float_buffer({R, C});
    dres_ = ops_.float_buffer({R, C});
    dsmall_ = ops_.float_buffer({R, C});
    dbig_ = ops_.float_buffer({R, spec_.mlp_hidden});
    dqkv_ = ops_.float_buffer({R, 3 * C});
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
                          &a.ln2, &a.ln2_mean, &a.ln2_rstd, &a.fc1, &a.gelu})
      add(*b);
  for (const auto* b : {&tokens_, &targets_, &losses_, &proj_, &lnf_, &lnf_mean_, &lnf_rstd_,
                        &logits_, &dlnf_, &dres_, &dsmall_, &dbig_, &dqkv_})
    add(*b);
  return total;
}

AttentionInputs Decoder::attention_inputs(const LayerWeights& w, const Tensor& qkv) const {
  const int64_t C = spec_.d_model;
  AttentionInputs in;
  in.shape = {batch_, seq_len_, spec_.heads, spec_.head_dim, 3 * C};
  const Shape s{batch_, seq_len_, spec_.heads, spec_.head_dim};
  in.q = view_at(qkv, 0, s);
  in.k = view_at(qkv, C, s);
  in.v = view_at(qkv, 2 * C, s);
  in.bias = w.bias;
  in.dape = w.dape;
  return in;
}

AttentionGrads Decoder::attention_grads(const LayerWeights& g) const {
  const int64_t C = spec_.d_model;
  const Shape s{batch_, seq_len_, spec_.heads, spec_.head_dim};
  AttentionGrads grads;
  grads.dq = view_at(dqkv_, 0, s);
  grads.dk = view_at(dqkv_, C, s);
  grads.dv = view_at(dqkv_, 2 * C, s);
  grads.bias = g.bias;
  grads.dape = g.dape;
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
  ops_.embedding_forward(residual_[0], tokens_, params_.value("embed.weight"), wpe, seq_len_, 0);

  for (int l = 0; l < spec_.layers; ++l) {
    const LayerWeights& w = weights_[l];
    LayerActivations& a = acts_[training ? l : 0];
    const Tensor& x_in = residual_[training ? l : 0];
    const Tensor& x_out = residual_[training ? l + 1 : 0];
    // In inference mode the residual stream is updated in place.
    const Tensor& x_mid = training ? a.x_mid.tensor() : x_in;

    ops_.layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x_in, w.ln1_w, w.ln1_b);
    ops_.matmul_forward(a.qkv, a.ln1, w.qkv_w, w.qkv_b);
    AttentionInputs in = attention_inputs(w, a.qkv);
    if (spec_.position == PositionScheme::rope)
      ops_.rope_forward(in.q, in.k, in.shape, 0, spec_.rope_base);
    ops_.attention_forward(in, a.att, a.lse, spec_.attention);
    finish_layer(w, a, x_in, x_mid, x_out);
  }
  ops_.layernorm_forward(lnf_, lnf_mean_, lnf_rstd_, residual_.back(),
                         params_.value("final_ln.weight"), params_.value("final_ln.bias"));
}

void Decoder::finish_layer(const LayerWeights& w, LayerActivations& a, const Tensor& x_in,
                           const Tensor& x_mid, const Tensor& x_out) {
  ops_.matmul_forward(proj_, a.att, w.out_w, w.out_b);
  ops_.add(x_mid, x_in, proj_);
  ops_.layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, x_mid, w.ln2_w, w.ln2_b);
  ops_.matmul_forward(a.fc1, a.ln2, w.fc1_w, w.fc1_b);
  ops_.gelu_forward(a.gelu, a.fc1);
  ops_.matmul_forward(proj_, a.gelu, w.fc2_w, w.fc2_b);
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
  const int64_t R = int64_t{batch_} * seq_len_, C = spec_.d_model, Vp = spec_.padded_vocab;
  const int64_t chunk = logits_.tensor().shape[0];
  const Tensor w = params_.value("lm_head.weight"), b = params_.value("lm_head.bias");
  for (int64_t r0 = 0; r0 < R; r0 += chunk) {
    const int64_t n = std::min(chunk, R - r0);
    const Tensor x = lnf_.tensor().slice(r0 * C, {n, C});
    const Tensor logits = logits_.tensor().slice(0, {n, Vp});
    ops_.matmul_forward(logits, x, w, b);
    ops_.cross_entropy(losses_.tensor().slice(r0, {n}), logits, targets_.tensor().slice(r0, {n}),
                       spec_.vocab, training ? grad_scale : 0.0);
    if (training) {
      ops_.matmul_backward(dlnf_.tensor().slice(r0 * C, {n, C}), params_.grad("lm_head.weight"),
                           params_.grad("lm_head.bias"), logits, x, w);
    }
  }
  if (training) report_gradients("lm_head.");
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
    ops_.layernorm_backward(dres, g.ln2_w, g.ln2_b, dsmall_, a.x_mid, w.ln2_w, a.ln2_mean,
                            a.ln2_rstd);
    // x_mid = x_in + out(attention(qkv(ln1(x_in)))): dres now holds d x_mid.
    ops_.matmul_backward(dsmall_, g.out_w, g.out_b, dres, a.att, w.out_w);
    const AttentionInputs in = attention_inputs(w, a.qkv);
    const AttentionGrads grads = attention_grads(g);
    ops_.attention_backward(in, a.att, a.lse, dsmall_, grads, spec_.attention);
    if (spec_.position == PositionScheme::rope)
      ops_.rope_backward(grads.dq, grads.dk, in.shape, 0, spec_.rope_base);
    ops_.matmul_backward(dsmall_, g.qkv_w, g.qkv_b, dqkv_, a.ln1, w.qkv_w);
    ops_.layernorm_backward(dres, g.ln1_w, g.ln1_b, dsmall_, residual_[l], w.ln1_w, a.ln1_mean,
                            a.ln1_rstd);
    report_gradients(layer_param(l, ""));
  }
  const Tensor dwpe =
      spec_.position == PositionScheme::learned ? params_.grad("pos_embed.weight") : Tensor();
  ops_.embedding_backward(params_.grad("embed.weight"), dwpe, dres, tokens_, seq_len_, 0);
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
