// The reference attention in double: forward against a naive scalar evaluation of the math
// written here, every gradient against central finite differences, for every scheme with and
// without DAPE, odd sizes and N = 1; then the edges (clamp, tie, accumulation, causality,
// saturation, bad arguments) and determinism across thread counts.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "tests/unit/attention_problem.h"

namespace dape {
namespace {

using test::AttentionCase;
using test::AttentionProblem;

// ---- a naive forward, one (b, i, j) at a time -------------------------------------------------

std::vector<double> reference_slopes(int n) {  // the ALiBi reference get_slopes
  auto power_of_2 = [](int m) {
    std::vector<double> s;
    for (int i = 0; i < m; ++i) s.push_back(std::pow(2.0, -8.0 * (i + 1) / m));
    return s;
  };
  const int closest = 1 << static_cast<int>(std::floor(std::log2(n)));
  if (closest == n) return power_of_2(n);
  std::vector<double> s = power_of_2(closest), extra = reference_slopes(2 * closest);
  for (int i = 0; static_cast<int>(s.size()) < n; i += 2) s.push_back(extra[i]);
  return s;
}

struct NaiveResult {
  std::vector<double> out, lse;
};

NaiveResult naive_attention(const AttentionProblem& p) {
  const AttentionCase& c = p.config();
  const auto& val = p.values;
  const int B = c.B, N = c.N, H = c.H, D = c.D;
  auto at = [&](int b, int n, int h) { return ((int64_t{b} * N + n) * H + h) * D; };
  std::vector<double> q = val.at("q"), k = val.at("k");
  if (c.scheme == PositionScheme::rope) {
    for (auto* x : {&q, &k})
      for (int b = 0; b < B; ++b)
        for (int n = 0; n < N; ++n)
          for (int h = 0; h < H; ++h) {
            double* v = x->data() + at(b, n, h);
            std::vector<double> in(v, v + D);
            for (int d = 0; d < D; ++d) {
              const double angle = n * std::pow(10000.0, -2.0 * (d % (D / 2)) / D);
              const double rot = d < D / 2 ? -in[d + D / 2] : in[d - D / 2];
              v[d] = in[d] * std::cos(angle) + rot * std::sin(angle);
            }
          }
  }
  const auto slopes = reference_slopes(H);
  auto bias = [&](int h, int i, int j) -> double {
    const double rel = i - j;
    switch (c.scheme) {
      case PositionScheme::alibi:
        return -slopes[h] * rel;
      case PositionScheme::kerple: {
        const double pp = std::max(val.at("kerple_p")[h], 1e-2);
        const double aa = std::max(val.at("kerple_a")[h], 1e-2);
        return -pp * std::log(1 + aa * rel);
      }
      case PositionScheme::fire: {
        const double cc = val.at("fire_c")[0];
        const double thr = std::fabs(val.at("fire_L_multiplier")[0] * c.fire_L);
        const double u = std::log(std::fabs(cc * rel) + 1) /
                         (std::log(std::fabs(cc * std::max<double>(i, thr)) + 1) + 1e-6);
        double g = val.at("fire_b2")[h];
        for (int w = 0; w < c.G; ++w) {
          const double z = val.at("fire_w1")[w] * u + val.at("fire_b1")[w];
          const double a = z > 0 ? z : (c.fire_leaky ? 0.01 * z : 0.0);
          g += val.at("fire_w2")[h * c.G + w] * a;
        }
        return g;
      }
      default:
        return 0.0;
    }
  };
  NaiveResult r;
  r.out.assign(val.at("q").size(), 0.0);
  r.lse.assign(static_cast<size_t>(B) * H * N, 0.0);
  std::vector<double> A(static_cast<size_t>(H) * N), S(H), Bv(H);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < N; ++i) {
      for (int j = 0; j <= i; ++j) {
        for (int h = 0; h < H; ++h) {
          double s = 0;
          for (int d = 0; d < D; ++d) s += q[at(b, i, h) + d] * k[at(b, j, h) + d];
          S[h] = s / std::sqrt(static_cast<double>(D));
          Bv[h] = bias(h, i, j);
        }
        for (int h = 0; h < H; ++h) {
          double f = 0;
          if (c.dape) {
            f = val.at("dape_b2")[h];
            for (int w = 0; w < c.W; ++w) {
              double z = val.at("dape_b1")[w];
              for (int e = 0; e < H; ++e) {
                z += val.at("dape_w1")[w * 2 * H + e] * S[e];
                z += val.at("dape_w1")[w * 2 * H + H + e] * Bv[e];
              }
              f += val.at("dape_w2")[h * c.W + w] * (z > 0 ? z : 0.01 * z);
            }
          }
          A[h * N + j] = S[h] + Bv[h] + f;
        }
      }
      for (int h = 0; h < H; ++h) {
        double m = -INFINITY, total = 0;
        for (int j = 0; j <= i; ++j) m = std::max(m, A[h * N + j]);
        for (int j = 0; j <= i; ++j) total += std::exp(A[h * N + j] - m);
        r.lse[(int64_t{b} * H + h) * N + i] = m + std::log(total);
        for (int j = 0; j <= i; ++j) {
          const double pij = std::exp(A[h * N + j] - m) / total;
          for (int d = 0; d < D; ++d) r.out[at(b, i, h) + d] += pij * val.at("v")[at(b, j, h) + d];
        }
      }
    }
  return r;
}

bool all_finite(const std::vector<double>& v) {
  for (double x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

// ---- forward and gradients, every scheme, with and without DAPE -------------------------------

class AttentionReferenceGradients : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(AttentionReferenceGradients, ForwardMatchesNaiveAndGradientsMatchFiniteDifferences) {
  CpuOps ops(DType::f64);
  AttentionProblem p(GetParam(), 42);
  const auto analytic = p.run(ops, /*backward=*/true);
  ASSERT_TRUE(all_finite(analytic.out) && all_finite(analytic.lse));

  const NaiveResult naive = naive_attention(p);
  EXPECT_LE(test::max_abs_diff(analytic.out, naive.out), 1e-12);
  EXPECT_LE(test::max_abs_diff(analytic.lse, naive.lse), 1e-12);

  size_t checked = 0;
  for (auto& [name, x] : p.values) {
    ASSERT_TRUE(analytic.grads.count(name)) << "no gradient for " << name;
    const auto& g = analytic.grads.at(name);
    ASSERT_TRUE(all_finite(g)) << name;
    const auto numeric = test::finite_difference_gradient(x, [&] { return p.loss(ops); });
    test::expect_gradients_close(g, numeric, 1e-6, 1e-8, GetParam().name() + " d/d" + name);
    ++checked;
  }
  // q, k, v and every learned parameter of the configuration.
  const AttentionCase& c = GetParam();
  size_t expected = 3 + (c.dape ? 4 : 0) + (c.scheme == PositionScheme::kerple ? 2 : 0) +
                    (c.scheme == PositionScheme::fire ? 6 : 0);
  EXPECT_EQ(checked, expected);
  EXPECT_EQ(analytic.grads.size(), expected);
}

std::vector<AttentionCase> gradient_cases() {
  std::vector<AttentionCase> cases;
  for (auto scheme : {PositionScheme::none, PositionScheme::rope, PositionScheme::alibi,
                      PositionScheme::kerple, PositionScheme::fire})
    for (bool dape : {false, true}) {
      AttentionCase c;
      c.scheme = scheme;
      c.dape = dape;
      c.fire_leaky = dape;  // as the reference code: LeakyReLU inside g under DAPE
      cases.push_back(c);   // B=2 N=7 H=3 D=4 W=5
      AttentionCase one = c;
      one.B = 1;
      one.N = 1;
      one.H = 2;
      one.W = 3;
      cases.push_back(one);
    }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllSchemes, AttentionReferenceGradients,
                         ::testing::ValuesIn(gradient_cases()),
                         [](const auto& test_info) { return test_info.param.name(); });

// ---- edges --------------------------------------------------------------------------------------

TEST(AttentionReference, KerpleClampUsesTheFloorAndPassesTheGradientThrough) {
  CpuOps ops(DType::f64);
  AttentionCase c;
  c.scheme = PositionScheme::kerple;
  c.dape = true;
  AttentionProblem below(c, 7), at_floor(c, 7);
  below.values["kerple_p"][1] = 0.004;
  below.values["kerple_a"][2] = -0.5;
  at_floor.values["kerple_p"][1] = 1e-2;
  at_floor.values["kerple_a"][2] = 1e-2;
  const auto r1 = below.run(ops, true), r2 = at_floor.run(ops, true);
  EXPECT_EQ(r1.out, r2.out);  // the value used is max(value, 1e-2)
  EXPECT_EQ(r1.grads.at("kerple_p"), r2.grads.at("kerple_p"));
  EXPECT_EQ(r1.grads.at("kerple_a"), r2.grads.at("kerple_a"));
  EXPECT_NE(r1.grads.at("kerple_p")[1], 0.0);  // passed through, not zeroed by the clamp
  EXPECT_NE(r1.grads.at("kerple_a")[2], 0.0);
}

TEST(AttentionReference, FireTieAtTheThresholdSplitsTheGradient) {
  // |L_mult · L| = 4 = i for query row 4: torch.max(i, thr) gives each side half the gradient,
  // so d/dL_mult is the mean of the two one-sided derivatives.
  CpuOps ops(DType::f64);
  AttentionCase c;
  c.scheme = PositionScheme::fire;
  c.dape = true;
  c.fire_leaky = true;
  c.fire_L = 4.0f;
  AttentionProblem p(c, 9);
  p.values["fire_L_multiplier"] = {1.0};
  const double analytic = p.run(ops, true).grads.at("fire_L_multiplier")[0];
  auto& m = p.values["fire_L_multiplier"][0];
  const double h = 1e-7, f0 = p.loss(ops);
  m = 1.0 + h;
  const double right = (p.loss(ops) - f0) / h;
  m = 1.0 - h;
  const double left = (f0 - p.loss(ops)) / h;
  m = 1.0;
  EXPECT_GT(std::fabs(right - left), 1e-3) << "the tie must matter for this test to mean anything";
  EXPECT_NEAR(analytic, 0.5 * (left + right), 1e-5);
}

TEST(AttentionReference, ParameterGradientsAccumulateAndActivationGradientsAreOverwritten) {
  CpuOps ops(DType::f64);
  AttentionCase c;
  c.scheme = PositionScheme::fire;
  c.dape = true;
  AttentionProblem p(c, 11);
  const auto fresh = p.run(ops, true, 0.0);
  const auto accumulated = p.run(ops, true, 1.5);  // parameter gradients start at 1.5
  for (const auto& [name, g] : fresh.grads) {
    const auto& a = accumulated.grads.at(name);
    const bool activation = name == "q" || name == "k" || name == "v";  // start as NaN: overwritten
    for (size_t i = 0; i < g.size(); ++i)
      EXPECT_NEAR(a[i], g[i] + (activation ? 0.0 : 1.5), 1e-12) << name << "[" << i << "]";
  }
}

TEST(AttentionReference, LaterKeysDoNotReachEarlierQueries) {
  // The mask is applied after f, and f at masked positions is skipped: changing the last token's
  // key and value leaves every earlier row's output bitwise unchanged.
  CpuOps ops(DType::f32);
  for (auto scheme : {PositionScheme::kerple, PositionScheme::fire, PositionScheme::alibi}) {
    AttentionCase c;
    c.scheme = scheme;
    c.dape = true;
    c.N = 12;
    AttentionProblem p(c, 13);
    const auto before = p.run(ops, false);
    const int HD = c.H * c.D;
    for (int b = 0; b < c.B; ++b)
      for (int e = 0; e < HD; ++e) {
        const int64_t at = (int64_t{b} * c.N + c.N - 1) * HD + e;
        p.values["k"][at] = 1e4;
        p.values["v"][at] = -1e4;
      }
    const auto after = p.run(ops, false);
    for (int b = 0; b < c.B; ++b)
      for (int i = 0; i < c.N - 1; ++i)
        for (int e = 0; e < HD; ++e) {
          const int64_t at = (int64_t{b} * c.N + i) * HD + e;
          EXPECT_EQ(before.out[at], after.out[at]) << "b=" << b << " i=" << i;
        }
  }
}

TEST(AttentionReference, SaturatedLogitsStayFinite) {
  CpuOps ops(DType::f32);
  AttentionCase c;
  c.scheme = PositionScheme::kerple;
  c.dape = true;
  c.N = 16;
  AttentionProblem p(c, 17);
  for (auto& x : p.values["q"]) x *= 300;  // logits in the hundreds: softmax is one-hot
  for (auto& x : p.values["k"]) x *= 300;
  const auto r = p.run(ops, true);
  EXPECT_TRUE(all_finite(r.out));
  EXPECT_TRUE(all_finite(r.lse));
  for (const auto& [name, g] : r.grads) EXPECT_TRUE(all_finite(g)) << name;
}

template <class Fn>
void expect_internal_error(Fn&& fn, std::initializer_list<const char*> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error was raised";
  } catch (const InternalError& e) {
    for (const char* p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message lacks '" << p << "': " << e.what();
  }
}

TEST(AttentionReference, RejectsParametersOfTheWrongShape) {
  CpuOps ops(DType::f64);
  AttentionCase c;
  c.scheme = PositionScheme::kerple;
  c.dape = true;
  {
    AttentionProblem p(c, 19);
    p.values["dape_w1"].resize(25);  // W=5 × 2H=6 expected
    expect_internal_error([&] { p.run(ops, false); }, {"dape w1", "[5, 6]"});
  }
  {
    AttentionProblem p(c, 19);
    p.values["kerple_a"].resize(2);
    expect_internal_error([&] { p.run(ops, false); }, {"kerple_a", "[3]"});
  }
  {
    AttentionCase f = c;
    f.scheme = PositionScheme::fire;
    AttentionProblem p(f, 19);
    p.values["fire_w2"].resize(5);  // H=3 × W=4 expected
    expect_internal_error([&] { p.run(ops, false); }, {"fire_w2", "[3, 4]"});
  }
  {  // A float32 parameter handed to a float64 computation.
    AttentionProblem p(c, 19);
    DeviceBuffer qkv = ops.float_buffer({c.B * c.N, p.stride()});
    std::vector<float> f(c.H);
    AttentionInputs in;
    in.shape = p.shape();
    in.q = in.k = in.v = qkv.tensor().reshape({c.B * c.N * p.stride()});
    in.bias.scheme = PositionScheme::kerple;
    in.bias.kerple_p = in.bias.kerple_a = Tensor(f.data(), DType::f32, Shape{c.H});
    DeviceBuffer out = ops.float_buffer({c.B, c.N, c.H, c.D});
    DeviceBuffer lse = ops.float_buffer({c.B, c.H, c.N});
    expect_internal_error([&] { ops.attention_forward(in, out, lse, AttentionImpl::reference); },
                          {"kerple_p holds float32", "float64"});
  }
}

// ---- determinism --------------------------------------------------------------------------------

class ThreadCount {
 public:
  explicit ThreadCount(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

void expect_bitwise_equal(const AttentionProblem::Result& a, const AttentionProblem::Result& b,
                          const std::string& what) {
  EXPECT_EQ(std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(double)), 0) << what;
  EXPECT_EQ(std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(double)), 0) << what;
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (const auto& [name, g] : a.grads)
    EXPECT_EQ(std::memcmp(g.data(), b.grads.at(name).data(), g.size() * sizeof(double)), 0)
        << what << ": gradient of " << name;
}

TEST(AttentionReference, ResultsAreBitwiseIdenticalAcrossRunsAndThreadCounts) {
  CpuOps ops(DType::f32);
  for (auto scheme : {PositionScheme::kerple, PositionScheme::fire}) {
    AttentionCase c;
    c.scheme = scheme;
    c.dape = true;
    c.fire_leaky = true;
    c.B = 2;
    c.N = 45;  // several row blocks and column blocks, the last ones partial
    c.H = 4;
    c.D = 8;
    c.W = 16;
    c.G = 16;
    c.fire_L = 20.0f;
    AttentionProblem p(c, 23);
    AttentionProblem::Result one, two, two_again, three;
    {
      ThreadCount t(1);
      one = p.run(ops, true);
    }
    {
      ThreadCount t(2);
      two = p.run(ops, true);
      two_again = p.run(ops, true);
    }
    {
      ThreadCount t(3);
      three = p.run(ops, true);
    }
    const std::string name = position_scheme_name(scheme);
    expect_bitwise_equal(two, two_again, name + ": two runs on 2 threads");
    expect_bitwise_equal(one, two, name + ": 1 thread vs 2");
    expect_bitwise_equal(one, three, name + ": 1 thread vs 3");
  }
}

}  // namespace
}  // namespace dape
