// Attention maps (core/model/attention_map.h) against the model's own attention: for every
// position scheme with and without DAPE, the map's probabilities P of a layer are a causal
// softmax (rows sum to 1, zeros above the diagonal), and P·V equals the output the attention
// kernel computed in the same forward pass (reference in float64 to 1e-10, fused in float32 to
// 1e-5), which holds only if the map's S, B and f are the kernel's. f is zero without DAPE and
// changes the map with it. Then the JSON's shape and the errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/rng.h"
#include "core/model/attention_map.h"
#include "core/model/decoder.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/unit/tiny_model.h"

namespace dape {
namespace {

constexpr int kLength = 14;

struct Case {
  PositionScheme scheme;
  bool dape;
  DType dtype;
  AttentionImpl attention;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return std::string(position_scheme_name(c.scheme)) + (c.dape ? "_dape" : "") + "_" +
         dtype_name(c.dtype) + (c.attention == AttentionImpl::fused ? "_fused" : "_reference");
}

// `count` rows of `width` values `stride` apart, as doubles.
std::vector<double> rows_of(Ops& ops, const Tensor& t, int64_t count, int64_t stride,
                            int64_t width) {
  const int64_t span = (count - 1) * stride + width;
  std::vector<double> raw(span), out(count * width);
  ops.copy_to_host(raw.data(), DType::f64, Tensor(t.data, t.dtype, Shape{span}));
  for (int64_t r = 0; r < count; ++r)
    std::copy_n(raw.begin() + r * stride, width, out.begin() + r * width);
  return out;
}

class AttentionMapTest : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionMapTest, ProbabilitiesAreTheKernels) {
  const Case& c = GetParam();
  CpuOps ops(c.dtype, 2);
  ModelSpec spec = test::tiny_model_spec(c.scheme, c.dape, kLength, 4.0);
  spec.attention = c.attention;
  Decoder model(spec, ops, /*trainable=*/false);
  test::randomize_parameters(model, 11);
  const auto tokens = test::random_tokens(kLength, spec.vocab, 3);
  const int H = spec.heads, D = spec.head_dim, N = kLength;

  // Every layer's map, V and kernel output from one forward pass.
  std::vector<AttentionMap> maps;
  std::vector<std::vector<double>> values, outputs;
  model.set_attention_observer([&](int layer, const AttentionInputs& in, const Tensor& out) {
    maps.push_back(attention_map_from_inputs(ops, in, layer));
    values.push_back(rows_of(ops, in.v, N, in.shape.v_stride(), int64_t{H} * D));
    outputs.push_back(rows_of(ops, out, N, int64_t{H} * D, int64_t{H} * D));
  });
  model.logits<double>(tokens.data(), 1, N);
  model.set_attention_observer({});
  ASSERT_EQ(maps.size(), static_cast<size_t>(spec.layers));

  const double tolerance = c.dtype == DType::f64 ? 1e-10 : 1e-5;
  for (int l = 0; l < spec.layers; ++l) {
    const AttentionMap& m = maps[l];
    ASSERT_EQ(m.layer, l);
    ASSERT_EQ(m.heads, H);
    ASSERT_EQ(m.length, N);
    double max_f = 0, min_diag = 1, max_diag = 0;
    for (int h = 0; h < H; ++h) {
      for (int i = 0; i < N; ++i) {
        double total = 0;
        for (int j = 0; j < N; ++j) {
          const double p = m.probs[m.index(h, i, j)];
          if (j > i) {
            EXPECT_EQ(p, 0.0) << "layer " << l << " head " << h << " (" << i << ", " << j << ")";
            EXPECT_EQ(m.dape_f[m.index(h, i, j)], 0.0);
          } else {
            EXPECT_GE(p, 0.0);
            total += p;
            max_f = std::max(max_f, std::abs(m.dape_f[m.index(h, i, j)]));
          }
        }
        EXPECT_NEAR(total, 1.0, 1e-12) << "layer " << l << " head " << h << " row " << i;
        min_diag = std::min(min_diag, m.probs[m.index(h, i, i)]);
        max_diag = std::max(max_diag, m.probs[m.index(h, i, i)]);
        // out[i, h] = Σ_j P[h, i, j] · v[j, h]: the kernel's own output.
        for (int d = 0; d < D; ++d) {
          double pv = 0;
          for (int j = 0; j <= i; ++j)
            pv += m.probs[m.index(h, i, j)] * values[l][(int64_t{j} * H + h) * D + d];
          const double want = outputs[l][(int64_t{i} * H + h) * D + d];
          EXPECT_NEAR(pv, want, tolerance * std::max(1.0, std::abs(want)))
              << "layer " << l << " head " << h << " query " << i << " dim " << d;
        }
      }
    }
    // Attention that is not uniform (else P·V could not tell the schemes apart).
    EXPECT_GT(max_diag - min_diag, 0.05) << "layer " << l;
    if (c.dape)
      EXPECT_GT(max_f, 1e-3) << "layer " << l << ": f has no effect";
    else
      EXPECT_EQ(max_f, 0.0) << "layer " << l;
  }

  // The one-call form (a forward of its own) gives the same map of layer 1.
  const AttentionMap one = attention_map(model, tokens, 1);
  double diff = 0;
  for (size_t i = 0; i < one.probs.size(); ++i)
    diff = std::max(diff, std::abs(one.probs[i] - maps[1].probs[i]));
  EXPECT_LE(diff, 1e-12);
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (PositionScheme s : {PositionScheme::none, PositionScheme::learned, PositionScheme::rope,
                           PositionScheme::alibi, PositionScheme::kerple, PositionScheme::fire})
    for (bool dape : {false, true}) {
      cases.push_back({s, dape, DType::f64, AttentionImpl::reference});
      cases.push_back({s, dape, DType::f32, AttentionImpl::fused});
    }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Schemes, AttentionMapTest, ::testing::ValuesIn(all_cases()), case_name);

TEST(AttentionMapJson, TriangularTablesAndFields) {
  CpuOps ops(DType::f64, 1);
  const ModelSpec spec = test::tiny_model_spec(PositionScheme::alibi, true, kLength, 4.0);
  Decoder model(spec, ops, /*trainable=*/false);
  test::randomize_parameters(model, 2);
  const std::vector<int32_t> tokens = {1, 2, 3};
  const AttentionMap m = attention_map(model, tokens, 0);
  const std::string json = attention_map_json(m, tokens, {"a", "b", "\""});
  EXPECT_NE(json.find("\"position\":\"alibi\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"dape\":true"), std::string::npos);
  EXPECT_NE(json.find("\"token_text\":[\"a\",\"b\",\"\\\"\"]"), std::string::npos) << json;
  EXPECT_NE(json.find("\"dape_f\":[[["), std::string::npos);
  // Row 0 of head 0 holds exactly one probability, 1.
  EXPECT_NE(json.find("\"probs\":[[[1],["), std::string::npos) << json;
}

TEST(AttentionMapErrors, LayerOutOfRangeAndEmptyText) {
  CpuOps ops(DType::f64, 1);
  const ModelSpec spec = test::tiny_model_spec(PositionScheme::none, false, kLength, 4.0);
  Decoder model(spec, ops, /*trainable=*/false);
  const std::vector<int32_t> tokens = {1, 2};
  try {
    attention_map(model, tokens, 2);
    FAIL() << "layer 2 of 2 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 2 is out of range: the model has 2 layers"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(attention_map(model, tokens, -1), Error);
  EXPECT_THROW(attention_map(model, {}, 0), Error);
}

}  // namespace
}  // namespace dape
