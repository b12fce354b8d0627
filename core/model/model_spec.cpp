#include "core/model/model_spec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/check.h"

namespace dape {

std::string layer_param(int layer, const std::string& rest) {
  return fmt::format("layers.{}.{}", layer, rest);
}

ModelSpec ModelSpec::from_config(const config::Model& m, int vocab, int tp, int tp_rank) {
  ModelSpec s;
  DAPE_CHECK(tp >= 1 && tp_rank >= 0 && tp_rank < tp, "tensor-parallel rank {} of {}", tp_rank, tp);
  if (m.heads() % tp != 0)
    fail("model.heads = {} is not divisible by parallel.tp = {}", m.heads(), tp);
  s.tp = tp;
  s.tp_rank = tp_rank;
  s.layers = m.layers();
  s.d_model = m.d_model();
  s.heads = m.heads();
  s.head_dim = m.d_model() / m.heads();
  s.mlp_hidden = m.mlp_ratio() * m.d_model();
  if (m.vocab_size() > 0) {
    if (m.vocab_size() < vocab)
      fail("model.vocab_size = {} is smaller than the dataset's vocabulary of {} tokens",
           m.vocab_size(), vocab);
    vocab = m.vocab_size();
  }
  DAPE_CHECK(vocab > 0, "vocabulary size {} must be positive", vocab);
  s.vocab = vocab;
  // Under tensor parallelism each rank's vocabulary slice keeps the multiple: 128 · tp at least.
  const int mult = tp > 1 ? std::max(m.vocab_pad_multiple(), 128) * tp : m.vocab_pad_multiple();
  s.padded_vocab = (vocab + mult - 1) / mult * mult;
  if (!parse_position_scheme(m.position(), &s.position))
    fail("model.position: '{}' is not one of none|learned|rope|alibi|kerple|fire", m.position());
  s.dape = m.dape().enabled();
  s.dape_width = m.dape().mlp_width();
  s.max_positions = m.max_positions();
  s.rope_base = m.rope_base();
  s.init_std = m.init_std();
  s.kerple_clamp_min = m.kerple().clamp_min();
  s.fire_init_c = m.fire().init_c();
  s.fire_L = m.fire().init_l();
  s.fire_width = m.fire().mlp_width();
  const std::string& act = m.fire().activation();
  s.fire_leaky_relu = act == "leaky_relu" || (act == "auto" && s.dape);
  s.attention = m.attention() == "fused" ? AttentionImpl::fused : AttentionImpl::reference;
  return s;
}

void ModelSpec::register_params(ParamStore& store) const {
  const int64_t C = d_model, H = heads;
  const double resid_std = init_std / std::sqrt(2.0 * layers);
  // Tensor-parallel pieces: QKV (3 blocks) and fc1 by rows, attention-out and fc2 by columns,
  // the embedding and LM head by vocabulary rows; everything else whole.
  auto split_of = [&](const std::string& name, Shape shape) {
    TensorSplit s;
    s.global = shape;
    s.parts = tp;
    s.part = tp_rank;
    auto ends = [&](const char* suffix) {
      return name.size() >= std::strlen(suffix) &&
             name.compare(name.size() - std::strlen(suffix), std::strlen(suffix), suffix) == 0;
    };
    if (ends("attn.qkv.weight") || ends("attn.qkv.bias")) {
      s.kind = TensorSplit::Kind::rows;
      s.blocks = 3;
    } else if (ends("mlp.fc1.weight") || ends("mlp.fc1.bias") || name == "embed.weight" ||
               name == "lm_head.weight" || name == "lm_head.bias") {
      s.kind = TensorSplit::Kind::rows;
    } else if (ends("attn.out.weight") || ends("mlp.fc2.weight")) {
      s.kind = TensorSplit::Kind::columns;
    }
    return s;
  };
  auto add = [&](ParamSpec p) {
    p.split = split_of(p.name, p.shape);
    p.shape = p.split.local_shape();
    store.add(std::move(p));
  };
  auto normal = [&](std::string name, Shape shape, double std) {
    add({std::move(name), shape, ParamGroup::decay, InitKind::normal, std, 0});
  };
  auto constant = [&](std::string name, Shape shape, double v) {
    add({std::move(name), shape, ParamGroup::no_decay, InitKind::constant, v, 0});
  };
  // PyTorch's nn.Linear default: U(±1/sqrt(fan_in)) for weight and bias. No weight decay: these
  // are position-encoding parameters.
  auto torch_linear = [&](const std::string& prefix, const std::string& w, const std::string& b,
                          int64_t out, int64_t in) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    add({prefix + w, {out, in}, ParamGroup::no_decay, InitKind::uniform, -bound, bound});
    add({prefix + b, {out}, ParamGroup::no_decay, InitKind::uniform, -bound, bound});
  };

  normal("embed.weight", {padded_vocab, C}, init_std);
  if (position == PositionScheme::learned) {
    add({"pos_embed.weight",
         {max_positions, C},
         ParamGroup::no_decay,
         InitKind::normal,
         init_std,
         0});
  }
  for (int l = 0; l < layers; ++l) {
    constant(layer_param(l, "ln1.weight"), {C}, 1.0);
    constant(layer_param(l, "ln1.bias"), {C}, 0.0);
    normal(layer_param(l, "attn.qkv.weight"), {3 * C, C}, init_std);
    constant(layer_param(l, "attn.qkv.bias"), {3 * C}, 0.0);
    normal(layer_param(l, "attn.out.weight"), {C, C}, resid_std);
    constant(layer_param(l, "attn.out.bias"), {C}, 0.0);
    if (position == PositionScheme::kerple) {
      ParamSpec p{
          layer_param(l, "attn.kerple.p"), {H}, ParamGroup::no_decay, InitKind::uniform, 0, 2};
      p.clamp_min = kerple_clamp_min;
      add(p);
      ParamSpec a{
          layer_param(l, "attn.kerple.a"), {H}, ParamGroup::no_decay, InitKind::uniform, 0, 1};
      a.clamp_min = kerple_clamp_min;
      add(a);
    }
    if (position == PositionScheme::fire) {
      constant(layer_param(l, "attn.fire.c"), {1}, fire_init_c);
      constant(layer_param(l, "attn.fire.L_multiplier"), {1}, 1.0);
      torch_linear(layer_param(l, "attn.fire."), "w1", "b1", fire_width, 1);
      torch_linear(layer_param(l, "attn.fire."), "w2", "b2", H, fire_width);
    }
    if (dape) {
      torch_linear(layer_param(l, "attn.dape."), "w1", "b1", dape_width, 2 * H);
      torch_linear(layer_param(l, "attn.dape."), "w2", "b2", H, dape_width);
    }
    constant(layer_param(l, "ln2.weight"), {C}, 1.0);
    constant(layer_param(l, "ln2.bias"), {C}, 0.0);
    normal(layer_param(l, "mlp.fc1.weight"), {mlp_hidden, C}, init_std);
    constant(layer_param(l, "mlp.fc1.bias"), {mlp_hidden}, 0.0);
    normal(layer_param(l, "mlp.fc2.weight"), {C, mlp_hidden}, resid_std);
    constant(layer_param(l, "mlp.fc2.bias"), {C}, 0.0);
  }
  constant("final_ln.weight", {C}, 1.0);
  constant("final_ln.bias", {C}, 0.0);
  normal("lm_head.weight", {padded_vocab, C}, init_std);
  constant("lm_head.bias", {padded_vocab}, 0.0);
}

std::string ModelSpec::describe() const {
  std::string pos = position_scheme_name(position);
  if (dape) pos += fmt::format(" + DAPE(W={})", dape_width);
  return fmt::format(
      "{} layers, d_model {}, {} heads (head dim {}), MLP {}, vocab {} (padded {}), "
      "position {}, {} attention{}",
      layers, d_model, heads, head_dim, mlp_hidden, vocab, padded_vocab, pos,
      attention == AttentionImpl::fused ? "fused" : "reference",
      tp > 1 ? fmt::format(", cut over {} tensor-parallel ranks", tp) : "");
}

}  // namespace dape
