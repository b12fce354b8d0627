// The whole decoder's hand-written backward against central finite differences in double, for
// every position scheme with and without DAPE.
#include <gtest/gtest.h>

#include <cmath>

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
  AttentionImpl attention = AttentionImpl::reference;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(position_scheme_name(info.param.scheme)) + (info.param.dape ? "_dape" : "") +
         (info.param.attention == AttentionImpl::fused ? "_fused" : "_reference");
}

ModelSpec tiny_spec(const Case& c) {
  // Threshold ≈ 2.3 < some query positions: both branches of FIRE's max(i, thr) are used.
  ModelSpec s = test::tiny_model_spec(c.scheme, c.dape, 9, 2.0);
  s.init_std = 0.3;
  s.attention = c.attention;
  return s;
}

class ModelGradient : public ::testing::TestWithParam<Case> {};

TEST_P(ModelGradient, MatchesFiniteDifferencesInDouble) {
  const Case c = GetParam();
  CpuOps ops(DType::f64, 2);
  const ModelSpec spec = tiny_spec(c);
  Decoder model(spec, ops);
  model.initialize(7);
  ParamStore& ps = model.params();

  // Move every parameter to a generic point: random values, no parameter near a kink
  // (Kerple's clamp, FIRE's tie at the threshold).
  std::vector<double> x(ps.size());
  Rng rng(99, 1);
  for (const auto& v : ps.views()) {
    for (int64_t i = 0; i < v.spec.shape.numel(); ++i) {
      double val = rng.uniform(-0.6, 0.6);
      const auto& n = v.spec.name;
      if (n.find("kerple") != std::string::npos) val = rng.uniform(0.2, 1.5);
      if (n.find("fire.c") != std::string::npos) val = rng.uniform(0.2, 0.6);
      if (n.find("L_multiplier") != std::string::npos) val = 1.15;
      if (n.find("ln") != std::string::npos && n.find("weight") != std::string::npos)
        val = 1.0 + 0.3 * val;
      x[v.offset + i] = val;
    }
  }
  const int B = 2, T = 5;
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = static_cast<int32_t>(rng.below(spec.vocab));
    targets[i] = static_cast<int32_t>(rng.below(spec.vocab));
  }
  const double scale = 1.0 / (B * T);
  auto loss = [&]() {
    ops.copy_from_host(ps.values(), x.data(), DType::f64);
    return model.forward(tokens.data(), targets.data(), B, T, false) * scale;
  };

  ops.copy_from_host(ps.values(), x.data(), DType::f64);
  ps.zero_grads(ops);
  const double l_train = model.forward(tokens.data(), targets.data(), B, T, true, scale) * scale;
  model.backward();
  const std::vector<double> analytic = download<double>(ops, ps.grads());
  EXPECT_NEAR(l_train, loss(), 1e-12) << "training and inference forward disagree";

  const std::vector<double> numeric = test::finite_difference_gradient(x, loss, 1e-6);
  for (const auto& v : ps.views()) {
    std::vector<double> a(analytic.begin() + v.offset,
                          analytic.begin() + v.offset + v.spec.shape.numel());
    std::vector<double> n(numeric.begin() + v.offset,
                          numeric.begin() + v.offset + v.spec.shape.numel());
    test::expect_gradients_close(a, n, 1e-5, 1e-8, v.spec.name);
  }
  // The padded rows of the LM head and embedding receive exactly zero gradient.
  const auto& head = ps.view("lm_head.weight");
  for (int64_t r = spec.vocab; r < spec.padded_vocab; ++r)
    for (int64_t k = 0; k < spec.d_model; ++k)
      EXPECT_EQ(analytic[head.offset + r * spec.d_model + k], 0.0);
}

std::vector<Case> every_case() {
  std::vector<Case> cases;
  for (AttentionImpl impl : {AttentionImpl::reference, AttentionImpl::fused})
    for (auto scheme : {PositionScheme::none, PositionScheme::learned, PositionScheme::rope,
                        PositionScheme::alibi, PositionScheme::kerple, PositionScheme::fire})
      for (bool dape : {false, true}) cases.push_back({scheme, dape, impl});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllSchemes, ModelGradient, ::testing::ValuesIn(every_case()), case_name);

// Gradient accumulation: two micro-batches with half weight each give the gradient of one
// batch of both, and the float32 model agrees with the float64 one.
TEST(ModelGradient, AccumulationAndFloatAgreeWithDouble) {
  ModelSpec spec = tiny_spec({PositionScheme::kerple, true});
  std::vector<std::vector<double>> grads;
  std::vector<double> losses;
  for (DType dt : {DType::f64, DType::f32}) {
    CpuOps ops(dt, 2);
    Decoder model(spec, ops);
    model.initialize(3);
    const int T = 6;
    std::vector<int32_t> tok(2 * T), tgt(2 * T);
    for (int i = 0; i < 2 * T; ++i) {
      tok[i] = (i * 7 + 3) % spec.vocab;
      tgt[i] = (i * 5 + 1) % spec.vocab;
    }
    double l = 0;
    for (int half = 0; half < 2; ++half) {
      l += model.forward(tok.data() + half * T, tgt.data() + half * T, 1, T, true, 1.0 / (2 * T));
      model.backward();
    }
    grads.push_back(download<double>(ops, model.params().grads()));
    losses.push_back(l);
    if (dt == DType::f64) {
      // The same batch in one micro-batch.
      model.params().zero_grads(ops);
      double l2 = model.forward(tok.data(), tgt.data(), 2, T, true, 1.0 / (2 * T));
      model.backward();
      auto g2 = download<double>(ops, model.params().grads());
      EXPECT_NEAR(l, l2, 1e-12);
      EXPECT_LT(test::max_abs_diff(grads.back(), g2), 1e-12);
    }
  }
  EXPECT_NEAR(losses[0], losses[1], 1e-4 * std::fabs(losses[0]));
  EXPECT_LT(test::scaled_error(grads[1], grads[0]), 1e-4);
}

}  // namespace
}  // namespace dape
