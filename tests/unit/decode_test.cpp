// KV-cache decoding against the full forward: for every position scheme with and without DAPE,
// in float64 and float32, a prompt is prefilled and the rest decoded in steps of one or a few
// tokens; every step's logits must be the full forward's logits at that position. Prefilling in
// one call and token by token must agree (logits and cache contents). Then the errors: a full
// cache, a learned-position model asked for more positions than it has.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "common/rng.h"
#include "core/model/decoder.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/unit/test_util.h"
#include "tests/unit/tiny_model.h"

namespace dape {
namespace {

struct Case {
  PositionScheme scheme;
  bool dape;
  DType dtype;
  AttentionImpl attention = AttentionImpl::fused;
};

std::string case_label(const Case& c) {
  return std::string(position_scheme_name(c.scheme)) + (c.dape ? "_dape" : "") + "_" +
         dtype_name(c.dtype) + (c.attention == AttentionImpl::fused ? "_fused" : "_reference");
}
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return case_label(info.param);
}
// gtest prints a case by its name.
void PrintTo(const Case& c, std::ostream* os) {
  *os << case_label(c);
}

constexpr int kBatch = 2, kLength = 12;

ModelSpec tiny_spec(const Case& c) {
  // Threshold 4.6: positions on both sides of FIRE's max(i, thr) are decoded.
  ModelSpec s = test::tiny_model_spec(c.scheme, c.dape, kLength, 4.0);
  s.attention = c.attention;
  return s;
}

// Columns [p0, p0 + n) of [batch, length] tokens, as [batch, n].
std::vector<int32_t> columns(const std::vector<int32_t>& tokens, int length, int p0, int n) {
  std::vector<int32_t> out;
  for (int b = 0; b < kBatch; ++b)
    for (int p = p0; p < p0 + n; ++p) out.push_back(tokens[b * length + p]);
  return out;
}

// The full forward's logits at position p of every sequence, [batch, vocab].
template <class T>
std::vector<double> at_position(const std::vector<T>& full, int length, int vocab, int p) {
  std::vector<double> out;
  for (int b = 0; b < kBatch; ++b)
    for (int v = 0; v < vocab; ++v)
      out.push_back(full[(static_cast<size_t>(b) * length + p) * vocab + v]);
  return out;
}

double tolerance(DType dt) {
  return dt == DType::f64 ? 1e-10 : 1e-5;
}

template <class T>
void expect_steps_match_full_forward(const Case& c) {
  CpuOps ops(c.dtype, 2);
  const ModelSpec spec = tiny_spec(c);
  Decoder model(spec, ops, /*trainable=*/false);
  test::randomize_parameters(model, 5);
  const auto tokens = test::random_tokens(kBatch * kLength, spec.vocab, 9);
  const std::vector<T> full = model.logits<T>(tokens.data(), kBatch, kLength);
  ASSERT_EQ(full.size(), static_cast<size_t>(kBatch) * kLength * spec.vocab);
  // The logits depend on position: otherwise this test could not tell positions apart.
  EXPECT_GT(test::max_abs_diff(at_position(full, kLength, spec.vocab, 3),
                               at_position(full, kLength, spec.vocab, 9)),
            1e-3);

  KvCache cache = model.make_cache(kBatch, kLength);
  int p = 0;
  for (const int n : {5, 1, 2, 1, 3}) {  // a prompt of 5, then steps of one and a few tokens
    const auto step = columns(tokens, kLength, p, n);
    const std::vector<T> logits = model.decode<T>(step.data(), kBatch, n, cache);
    p += n;
    ASSERT_EQ(cache.length(), p);
    const auto want = at_position(full, kLength, spec.vocab, p - 1);
    const std::vector<double> got(logits.begin(), logits.end());
    EXPECT_LE(test::scaled_error(got, want), tolerance(c.dtype))
        << "logits after decoding up to position " << p - 1;
  }
  EXPECT_EQ(p, kLength);
}

class Decode : public ::testing::TestWithParam<Case> {};

TEST_P(Decode, EveryStepMatchesTheFullForward) {
  if (GetParam().dtype == DType::f64)
    expect_steps_match_full_forward<double>(GetParam());
  else
    expect_steps_match_full_forward<float>(GetParam());
}

TEST_P(Decode, PrefillInOneCallEqualsTokenByToken) {
  const Case c = GetParam();
  CpuOps ops(c.dtype, 2);
  const ModelSpec spec = tiny_spec(c);
  Decoder model(spec, ops, /*trainable=*/false);
  test::randomize_parameters(model, 6);
  const int P = 7;
  const auto tokens = test::random_tokens(kBatch * kLength, spec.vocab, 10);
  KvCache whole = model.make_cache(kBatch, kLength), single = model.make_cache(kBatch, kLength);
  const auto prompt = columns(tokens, kLength, 0, P);
  std::vector<double> a = model.decode<double>(prompt.data(), kBatch, P, whole), b;
  for (int p = 0; p < P; ++p) {
    const auto one = columns(tokens, kLength, p, 1);
    b = model.decode<double>(one.data(), kBatch, 1, single);
  }
  EXPECT_LE(test::scaled_error(a, b), tolerance(c.dtype)) << "after the prompt";
  for (int l = 0; l < spec.layers; ++l) {
    EXPECT_LE(test::scaled_error(download<double>(ops, whole.keys(l)),
                                 download<double>(ops, single.keys(l))),
              tolerance(c.dtype))
        << "cached keys of layer " << l;
    EXPECT_LE(test::scaled_error(download<double>(ops, whole.values(l)),
                                 download<double>(ops, single.values(l))),
              tolerance(c.dtype))
        << "cached values of layer " << l;
  }
  const auto next = columns(tokens, kLength, P, 1);
  a = model.decode<double>(next.data(), kBatch, 1, whole);
  b = model.decode<double>(next.data(), kBatch, 1, single);
  EXPECT_LE(test::scaled_error(a, b), tolerance(c.dtype)) << "the step after the prompt";
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (auto scheme : {PositionScheme::none, PositionScheme::learned, PositionScheme::rope,
                      PositionScheme::alibi, PositionScheme::kerple, PositionScheme::fire})
    for (bool dape : {false, true})
      for (DType dt : {DType::f64, DType::f32})
        for (AttentionImpl impl : {AttentionImpl::fused, AttentionImpl::reference})
          cases.push_back({scheme, dape, dt, impl});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllSchemes, Decode, ::testing::ValuesIn(all_cases()), case_name);

TEST(Decode, TrainingForwardAfterDecodingIsUnchanged) {
  // Decoding resizes the model's buffers to inference mode; a training step afterwards must see
  // the same loss and gradient as before.
  CpuOps ops(DType::f64, 2);
  const ModelSpec spec = tiny_spec({PositionScheme::kerple, true, DType::f64});
  Decoder model(spec, ops);
  test::randomize_parameters(model, 7);
  const auto tokens = test::random_tokens(kBatch * 6, spec.vocab, 11);
  const auto targets = test::random_tokens(kBatch * 6, spec.vocab, 12);
  model.params().zero_grads(ops);
  const double before = model.forward(tokens.data(), targets.data(), kBatch, 6, true, 1.0);
  model.backward();
  const auto grads_before = download<double>(ops, model.params().grads());

  KvCache cache = model.make_cache(kBatch, 4);
  model.decode<double>(tokens.data(), kBatch, 3, cache);
  model.params().zero_grads(ops);
  EXPECT_EQ(model.forward(tokens.data(), targets.data(), kBatch, 6, true, 1.0), before);
  model.backward();
  EXPECT_EQ(download<double>(ops, model.params().grads()), grads_before);
}

TEST(Decode, AFullCacheIsAnError) {
  CpuOps ops(DType::f32, 2);
  const ModelSpec spec = tiny_spec({PositionScheme::alibi, true, DType::f32});
  Decoder model(spec, ops, false);
  model.initialize(1);
  KvCache cache = model.make_cache(kBatch, 4);
  const auto tokens = test::random_tokens(kBatch * 3, spec.vocab, 13);
  model.decode<float>(tokens.data(), kBatch, 3, cache);
  test::expect_error([&] { model.decode<float>(tokens.data(), kBatch, 2, cache); },
                     {"KV cache full", "3 of 4 tokens", "2 more"});
  EXPECT_EQ(cache.length(), 3);  // the failed step changed nothing
  model.decode<float>(tokens.data(), kBatch, 1, cache);
  EXPECT_EQ(cache.length(), 4);
  cache.clear();
  EXPECT_EQ(cache.length(), 0);
  test::expect_error([&] { model.make_cache(kBatch, 0); }, {"capacity", "at least 1"});
}

TEST(Decode, LearnedPositionsStopAtMaxPositions) {
  CpuOps ops(DType::f32, 2);
  const ModelSpec spec = tiny_spec({PositionScheme::learned, false, DType::f32});
  Decoder model(spec, ops, false);
  model.initialize(1);
  test::expect_error([&] { model.make_cache(1, kLength + 1); },
                     {"13 tokens", "model.max_positions = 12", "learned"});
  const auto tokens = test::random_tokens(kLength + 1, spec.vocab, 14);
  test::expect_error([&] { model.logits<float>(tokens.data(), 1, kLength + 1); },
                     {"length 13", "model.max_positions = 12"});
}

}  // namespace
}  // namespace dape
