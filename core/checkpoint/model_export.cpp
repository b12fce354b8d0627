#include "core/checkpoint/model_export.h"

#include <fmt/format.h>

#include <cstring>
#include <vector>

#include "common/check.h"
#include "core/checkpoint/box.h"
#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/safetensors.h"
#include "core/config/config.h"
#include "core/model/model_spec.h"

namespace dape {

namespace {

struct NameRule {
  const char* from;
  const char* to;
};

// Prefix rewrites, in order; a layer's prefix "layers.L." becomes "gpt_neox.layers.L.".
constexpr NameRule kLayerRules[] = {
    {"ln1.", "input_layernorm."},          {"attn.qkv.", "attention.query_key_value."},
    {"attn.out.", "attention.dense."},     {"attn.", "attention."},
    {"ln2.", "post_attention_layernorm."}, {"mlp.fc1.", "mlp.dense_h_to_4h."},
    {"mlp.fc2.", "mlp.dense_4h_to_h."},
};

constexpr NameRule kModelRules[] = {
    {"embed.weight", "gpt_neox.embed_in.weight"},
    {"pos_embed.weight", "gpt_neox.embed_pos.weight"},
    {"final_ln.weight", "gpt_neox.final_layer_norm.weight"},
    {"final_ln.bias", "gpt_neox.final_layer_norm.bias"},
    {"lm_head.weight", "embed_out.weight"},
    {"lm_head.bias", "embed_out.bias"},
};

bool is_vocab_tensor(const std::string& name) {
  return name == "embed.weight" || name == "lm_head.weight" || name == "lm_head.bias";
}

}  // namespace

std::string export_name(const std::string& name) {
  for (const auto& r : kModelRules)
    if (name == r.from) return r.to;
  if (name.rfind("layers.", 0) == 0) {
    const auto dot = name.find('.', 7);
    if (dot != std::string::npos) {
      const std::string layer = name.substr(0, dot + 1), rest = name.substr(dot + 1);
      for (const auto& r : kLayerRules)
        if (rest.rfind(r.from, 0) == 0)
          return "gpt_neox." + layer + r.to + rest.substr(std::strlen(r.from));
    }
  }
  fail("parameter '{}' has no exported name", name);
}

std::string export_checkpoint(const std::string& checkpoint_path, const std::string& out_path,
                              Ops& ops) {
  const CheckpointRef ref = open_checkpoint(checkpoint_path);
  const auto& m = ref.manifest;
  if (m.vocab() <= 0)
    fail(
        "checkpoint '{}' does not record its vocabulary size (saved by an older version); it "
        "cannot be exported",
        ref.dir);
  const LoadedConfig cfg = parse_config_text(m.config(), ref.dir + "/manifest.pb (config)");
  const ModelSpec spec = ModelSpec::from_config(cfg.msg.model(), static_cast<int>(m.vocab()));
  ParamStore params;
  spec.register_params(params);
  params.allocate(ops, /*with_grads=*/false);
  load_checkpoint(ref, ops, params, nullptr, {spec.vocab, spec.padded_vocab});

  SafetensorsWriter out;
  out.set_metadata("dape.config", m.config());
  out.set_metadata("dape.step", std::to_string(m.step()));
  out.set_metadata("dape.vocab", std::to_string(spec.vocab));
  int64_t values = 0;
  for (const auto& v : params.views()) {
    std::vector<float> data = download<float>(ops, v.value);
    std::vector<int64_t> shape(v.spec.shape.dims.begin(),
                               v.spec.shape.dims.begin() + v.spec.shape.rank);
    if (is_vocab_tensor(v.spec.name)) {
      shape[0] = spec.vocab;
      data.resize(static_cast<size_t>(spec.vocab * (v.spec.shape.numel() / v.spec.shape[0])));
    }
    values += static_cast<int64_t>(data.size());
    out.add_f32(export_name(v.spec.name), shape, data);
  }
  out.write(out_path);
  return fmt::format("exported {} (step {}): {} tensors, {} values to {}", ref.dir, m.step(),
                     params.views().size(), values, out_path);
}

void init_from_export(const std::string& path, Ops& ops, ParamStore& params, int64_t vocab,
                      int64_t padded_vocab) {
  const SafetensorsReader file(path);
  std::vector<float> values = download<float>(ops, params.values());
  for (const auto& v : params.views()) {
    const std::string name = export_name(v.spec.name);
    const SafetensorsEntry& e = file.entry(name);
    const Shape global = v.spec.split.is_split() ? v.spec.split.global : v.spec.shape;
    Shape want = global;
    if (is_vocab_tensor(v.spec.name)) {
      DAPE_CHECK(global[0] == padded_vocab, "'{}' has {} rows, the padded vocabulary is {}",
                 v.spec.name, global[0], padded_vocab);
      want.dims[0] = vocab;
    }
    const std::vector<int64_t> want_dims(want.dims.begin(), want.dims.begin() + want.rank);
    if (e.shape != want_dims || e.dtype != SafetensorsDType::F32)
      fail("'{}': tensor '{}' ({}) is {} {}; the model needs F32 {}", path, name, v.spec.name,
           safetensors_dtype_name(e.dtype), e.shape_str(), want.str());
    const float* src = reinterpret_cast<const float*>(file.bytes(e));
    const Box stored = Box::whole(want);
    for (const auto& seg : split_segments(v.spec.split, v.spec.shape)) {
      const Box both = intersect(seg.global, stored);
      if (both.empty()) continue;
      Box to = both;
      for (int i = 0; i < both.rank; ++i)
        to.offset[i] = seg.local.offset[i] + (both.offset[i] - seg.global.offset[i]);
      copy_box(src, 0, want, both, values.data(), -v.offset, v.spec.shape, to);
    }
  }
  upload(ops, params.values(), values);
}

}  // namespace dape
