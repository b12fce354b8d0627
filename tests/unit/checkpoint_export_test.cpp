// `dape export` and --init-from (core/checkpoint/model_export.h): the exported file, read back by
// the safetensors reader, holds every parameter under its GPT-NeoX-like name with the
// checkpoint's values (vocabulary tensors cut to the vocabulary); a model initialized from it has
// those values, padded vocabulary rows keeping their initial ones, at TP 1 and as a TP piece.
#include <gtest/gtest.h>

#include "common/check.h"
#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/model_export.h"
#include "core/checkpoint/safetensors.h"
#include "core/model/decoder.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

ModelSpec spec_at(int tp, int tp_rank) {
  ModelSpec s;
  s.layers = 2;
  s.d_model = 8;
  s.heads = 2;
  s.head_dim = 4;
  s.mlp_hidden = 32;
  s.vocab = 10;
  s.padded_vocab = 16;
  s.position = PositionScheme::kerple;
  s.dape = true;
  s.dape_width = 4;
  s.tp = tp;
  s.tp_rank = tp_rank;
  return s;
}

TEST(CheckpointExport, NamesFollowGptNeox) {
  EXPECT_EQ(export_name("embed.weight"), "gpt_neox.embed_in.weight");
  EXPECT_EQ(export_name("layers.3.attn.qkv.bias"),
            "gpt_neox.layers.3.attention.query_key_value.bias");
  EXPECT_EQ(export_name("layers.0.attn.out.weight"), "gpt_neox.layers.0.attention.dense.weight");
  EXPECT_EQ(export_name("layers.1.attn.dape.w1"), "gpt_neox.layers.1.attention.dape.w1");
  EXPECT_EQ(export_name("layers.1.mlp.fc2.bias"), "gpt_neox.layers.1.mlp.dense_4h_to_h.bias");
  EXPECT_EQ(export_name("layers.12.ln2.weight"),
            "gpt_neox.layers.12.post_attention_layernorm.weight");
  EXPECT_EQ(export_name("lm_head.bias"), "embed_out.bias");
  EXPECT_THROW(export_name("nothing.weight"), Error);
}

TEST(CheckpointExport, ExportedValuesInitializeAModelAtAnyTensorParallelPiece) {
  CpuOps ops(DType::f32, 1);
  test::ScratchDir dir;
  Decoder model(spec_at(1, 0), ops);
  model.initialize(21);
  TrainingState st;
  st.step = 7;
  CheckpointPlace place;
  place.vocab = {10, 16};
  save_checkpoint(dir.path(), ops, model.params(), nullptr, st,
                  "model { layers: 2 d_model: 8 heads: 2 vocab_pad_multiple: 16 position: "
                  "\"kerple\" dape { enabled: true mlp_width: 4 } }\n",
                  0, "", place);
  const std::string file = dir.path() + "/model.safetensors";
  export_checkpoint(dir.path(), file, ops);

  const SafetensorsReader reader(file);
  EXPECT_EQ(*reader.metadata_value("dape.step"), "7");
  EXPECT_EQ(reader.entries().size(), model.params().views().size());
  for (const auto& v : model.params().views()) {
    std::vector<float> want = download<float>(ops, v.value);
    if (v.spec.name == "embed.weight" || v.spec.name.rfind("lm_head.", 0) == 0)
      want.resize(want.size() / 16 * 10);
    EXPECT_EQ(reader.read_float(export_name(v.spec.name)), want) << v.spec.name;
  }

  // TP 1, another seed: the file's values, padded rows as initialized with that seed.
  Decoder fresh(spec_at(1, 0), ops);
  fresh.initialize(99);
  const auto before = download<float>(ops, fresh.params().value("embed.weight"));
  init_from_export(file, ops, fresh.params(), 10, 16);
  for (const auto& v : model.params().views()) {
    const auto got = download<float>(ops, fresh.params().value(v.spec.name));
    auto want = download<float>(ops, v.value);
    if (v.spec.name == "embed.weight")
      std::copy(before.begin() + 10 * 8, before.end(), want.begin() + 10 * 8);
    if (v.spec.name == "lm_head.bias")
      for (size_t i = 10; i < 16; ++i) want[i] = 0;  // initialized to 0
    if (v.spec.name == "lm_head.weight") continue;   // its padded rows are random
    EXPECT_EQ(got, want) << v.spec.name;
  }
  // Rank 1 of TP 2: local_of of the whole tensors, over the first 10 vocabulary rows.
  ModelSpec piece_spec = spec_at(2, 1);
  ParamStore piece;
  piece_spec.register_params(piece);
  piece.allocate(ops, false);
  piece.initialize(ops, 99);
  init_from_export(file, ops, piece, 10, 16);
  for (const auto& v : piece.views()) {
    if (v.spec.name == "embed.weight" || v.spec.name.rfind("lm_head.", 0) == 0) continue;
    EXPECT_EQ(download<float>(ops, v.value),
              local_of(v.spec.split, download<float>(ops, model.params().value(v.spec.name))))
        << v.spec.name;
  }
  // Vocabulary rows 8..15 are rank 1's; the file holds rows 8 and 9 of them.
  const auto embed = download<float>(ops, piece.value("embed.weight"));
  const auto whole = download<float>(ops, model.params().value("embed.weight"));
  EXPECT_EQ(std::vector<float>(embed.begin(), embed.begin() + 16),
            std::vector<float>(whole.begin() + 64, whole.begin() + 80));
}

TEST(CheckpointExport, WrongShapeNamesFileAndTensor) {
  CpuOps ops(DType::f32, 1);
  test::ScratchDir dir;
  Decoder model(spec_at(1, 0), ops);
  // Every tensor with its exported shape, but the embedding 3 × 3.
  SafetensorsWriter w;
  for (const auto& v : model.params().views()) {
    std::vector<int64_t> shape(v.spec.shape.dims.begin(),
                               v.spec.shape.dims.begin() + v.spec.shape.rank);
    if (v.spec.name == "embed.weight")
      shape = {3, 3};
    else if (v.spec.name.rfind("lm_head.", 0) == 0)
      shape[0] = 10;
    int64_t n = 1;
    for (auto d : shape) n *= d;
    w.add_f32(export_name(v.spec.name), shape, std::vector<float>(static_cast<size_t>(n), 1.0f));
  }
  const std::string file = dir.path() + "/bad.safetensors";
  w.write(file);
  const std::string msg =
      test::error_of([&] { init_from_export(file, ops, model.params(), 10, 16); });
  EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gpt_neox.embed_in.weight"), std::string::npos) << msg;
}

}  // namespace
}  // namespace dape
