// The reference attention in double: forward against a naive scalar evaluation of the math
// written here, every gradient against central finite differences, for every scheme with and
// without DAPE, odd sizes and N = 1, keys beyond the queries, separate strided k and v buffers
// and local head ranges; head ranges that sum to the full call; the decode identity (the last
// queries over cached keys are the full call's last rows); then the edges (clamp, tie,
// accumulation, causality, saturation, bad arguments) and determinism across thread counts.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kernels/cpu/attention_reference.h"
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

// out [B, N, H, D] and lse [B, H, N] of every head.
struct NaiveResult {
  std::vector<double> out, lse;
};

NaiveResult naive_attention(const AttentionProblem& p) {
  const AttentionCase& c = p.config();
  const auto& val = p.values;
  const int B = c.B, N = c.N, M = c.keys(), O = M - N, H = c.H, D = c.D;
  auto q_at = [&](int b, int t, int h) { return ((int64_t{b} * N + t) * H + h) * D; };
  auto k_at = [&](int b, int j, int h) { return ((int64_t{b} * M + j) * H + h) * D; };
  std::vector<double> q = val.at("q"), k = val.at("k");
  if (c.scheme == PositionScheme::rope) {
    auto rotate = [&](double* v, int pos) {
      std::vector<double> in(v, v + D);
      for (int d = 0; d < D; ++d) {
        const double angle = pos * std::pow(10000.0, -2.0 * (d % (D / 2)) / D);
        const double rot = d < D / 2 ? -in[d + D / 2] : in[d - D / 2];
        v[d] = in[d] * std::cos(angle) + rot * std::sin(angle);
      }
    };
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h) {
        for (int t = 0; t < N; ++t) rotate(q.data() + q_at(b, t, h), O + t);
        for (int j = 0; j < M; ++j) rotate(k.data() + k_at(b, j, h), j);
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
  std::vector<double> A(static_cast<size_t>(H) * M), S(H), Bv(H);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < N; ++t) {
      const int i = O + t;  // the query's position
      for (int j = 0; j <= i; ++j) {
        for (int h = 0; h < H; ++h) {
          double s = 0;
          for (int d = 0; d < D; ++d) s += q[q_at(b, t, h) + d] * k[k_at(b, j, h) + d];
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
          A[h * M + j] = S[h] + Bv[h] + f;
        }
      }
      for (int h = 0; h < H; ++h) {
        double m = -INFINITY, total = 0;
        for (int j = 0; j <= i; ++j) m = std::max(m, A[h * M + j]);
        for (int j = 0; j <= i; ++j) total += std::exp(A[h * M + j] - m);
        r.lse[(int64_t{b} * H + h) * N + t] = m + std::log(total);
        for (int j = 0; j <= i; ++j) {
          const double pij = std::exp(A[h * M + j] - m) / total;
          for (int d = 0; d < D; ++d)
            r.out[q_at(b, t, h) + d] += pij * val.at("v")[k_at(b, j, h) + d];
        }
      }
    }
  return r;
}

// The heads [h0, h0 + hl) of out [rows, H, D] (as [rows, hl, D]) or of lse [B, H, N] (as
// [B, hl, N]).
std::vector<double> out_heads(const std::vector<double>& out, int H, int D, int h0, int hl) {
  std::vector<double> r;
  const size_t rows = out.size() / (static_cast<size_t>(H) * D);
  for (size_t row = 0; row < rows; ++row)
    for (int h = h0; h < h0 + hl; ++h)
      for (int d = 0; d < D; ++d) r.push_back(out[(row * H + h) * D + d]);
  return r;
}
std::vector<double> lse_heads(const std::vector<double>& lse, int B, int H, int N, int h0, int hl) {
  std::vector<double> r;
  for (int b = 0; b < B; ++b)
    for (int h = h0; h < h0 + hl; ++h)
      for (int t = 0; t < N; ++t) r.push_back(lse[(static_cast<size_t>(b) * H + h) * N + t]);
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
  const AttentionCase& c = GetParam();
  AttentionProblem p(c, 42);
  const auto analytic = p.run(ops, /*backward=*/true);
  ASSERT_TRUE(all_finite(analytic.out) && all_finite(analytic.lse));
  EXPECT_TRUE(analytic.padding_intact) << "backward wrote outside the rows of dq, dk or dv";

  const NaiveResult naive = naive_attention(p);
  EXPECT_LE(
      test::max_abs_diff(analytic.out, out_heads(naive.out, c.H, c.D, c.head_begin, c.local())),
      1e-12);
  EXPECT_LE(test::max_abs_diff(analytic.lse,
                               lse_heads(naive.lse, c.B, c.H, c.N, c.head_begin, c.local())),
            1e-12);

  size_t checked = 0;
  for (auto& [name, x] : p.values) {
    ASSERT_TRUE(analytic.grads.count(name)) << "no gradient for " << name;
    const auto& g = analytic.grads.at(name);
    ASSERT_TRUE(all_finite(g)) << name;
    const auto numeric = test::finite_difference_gradient(x, [&] { return p.loss(ops); });
    test::expect_gradients_close(g, numeric, 1e-6, 1e-8, c.name() + " d/d" + name);
    ++checked;
  }
  // q, k, v and every learned parameter of the configuration.
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
      // Keys beyond the queries (decoding with a KV cache), k and v in padded buffers.
      AttentionCase kv = c;
      kv.N = 3;
      kv.M = 8;
      cases.push_back(kv);
      AttentionCase kv_one = one;  // one query over nine keys
      kv_one.M = 9;
      cases.push_back(kv_one);
      AttentionCase strided = c;  // separate buffers and strides, no offset
      strided.separate_kv = true;
      cases.push_back(strided);
      // A local head range, in the fused layout and with keys beyond the queries.
      AttentionCase heads = c;
      heads.H = 4;
      heads.head_begin = 1;
      heads.local_heads = 2;
      cases.push_back(heads);
      AttentionCase heads_kv = kv;
      heads_kv.H = 4;
      heads_kv.head_begin = 3;
      heads_kv.local_heads = 1;
      cases.push_back(heads_kv);
    }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllSchemes, AttentionReferenceGradients,
                         ::testing::ValuesIn(gradient_cases()),
                         [](const auto& test_info) { return test_info.param.name(); });

// ---- the head-range decomposition and the decode identity, every scheme ------------------------

struct SchemeCase {
  PositionScheme scheme;
  bool dape;
};

std::string scheme_case_name(const ::testing::TestParamInfo<SchemeCase>& info) {
  return std::string(position_scheme_name(info.param.scheme)) + (info.param.dape ? "_dape" : "");
}

std::vector<SchemeCase> scheme_cases() {
  std::vector<SchemeCase> cases;
  for (auto scheme : {PositionScheme::none, PositionScheme::rope, PositionScheme::alibi,
                      PositionScheme::kerple, PositionScheme::fire})
    for (bool dape : {false, true}) cases.push_back({scheme, dape});
  return cases;
}

AttentionCase scheme_case(const SchemeCase& s) {
  AttentionCase c;
  c.scheme = s.scheme;
  c.dape = s.dape;
  c.fire_leaky = s.dape;
  return c;
}

// max |a − b| ≤ tol · max(1, max |b|).
void expect_close(const std::vector<double>& a, const std::vector<double>& b, double tol,
                  const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  EXPECT_LE(test::scaled_error(a, b), tol) << what;
}

class AttentionReferenceHeadRanges : public ::testing::TestWithParam<SchemeCase> {};

// Split H = 4 into head ranges: each piece's out and lse are the full call's for its heads, its
// dv is the full dv of its heads, and dq, dk and every parameter gradient summed over the pieces
// are the full call's. In the fused layout and with 3 queries over 8 keys in separate buffers.
TEST_P(AttentionReferenceHeadRanges, PiecesSumToTheFullCall) {
  CpuOps ops(DType::f64);
  for (const bool kv : {false, true}) {
    AttentionCase c = scheme_case(GetParam());
    c.H = 4;
    if (kv) {
      c.N = 3;
      c.M = 8;
    }
    const AttentionProblem full_problem(c, 31);
    const auto full = full_problem.run(ops, true);
    for (const auto& split : std::vector<std::vector<int>>{{0, 2, 4}, {0, 1, 4}, {0, 3, 4}}) {
      std::map<std::string, std::vector<double>> summed;
      for (size_t piece = 0; piece + 1 < split.size(); ++piece) {
        AttentionCase pc = c;
        pc.head_begin = split[piece];
        pc.local_heads = split[piece + 1] - split[piece];
        AttentionProblem p(pc, 31);  // the same inputs: the seed fixes them
        const auto r = p.run(ops, true);
        const std::string what = pc.name();
        expect_close(r.out, out_heads(full.out, c.H, c.D, pc.head_begin, pc.local_heads), 1e-13,
                     what + " out");
        expect_close(r.lse, lse_heads(full.lse, c.B, c.H, c.N, pc.head_begin, pc.local_heads),
                     1e-13, what + " lse");
        EXPECT_TRUE(r.padding_intact) << what;
        for (const auto& [name, g] : r.grads) {
          auto& s = summed[name];
          if (s.empty()) s.assign(g.size(), 0.0);
          for (size_t i = 0; i < g.size(); ++i) s[i] += g[i];
        }
      }
      ASSERT_EQ(summed.size(), full.grads.size());
      for (const auto& [name, g] : full.grads)
        expect_close(summed.at(name), g, 1e-12,
                     c.name() + " split at " + std::to_string(split[1]) + ": d/d" + name);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllSchemes, AttentionReferenceHeadRanges,
                         ::testing::ValuesIn(scheme_cases()), scheme_case_name);

class AttentionReferenceDecode : public ::testing::TestWithParam<SchemeCase> {};

// Queries that are the last n positions over all the keys (a KV-cache decoding step) give the
// rows of a full causal call over the same keys at those positions: n = 1 (one new token) and
// n = 3 (several), in float64 and float32.
TEST_P(AttentionReferenceDecode, LastQueriesOverCachedKeysEqualTheFullCallsRows) {
  for (DType dt : {DType::f64, DType::f32}) {
    CpuOps ops(dt);
    AttentionCase c = scheme_case(GetParam());
    c.N = 9;
    c.fire_L = 5.0f;  // the threshold falls inside the rows decoded below
    const AttentionProblem full_problem(c, 37);
    const auto full = full_problem.run(ops, false);
    for (const int n : {1, 3}) {
      AttentionCase kc = c;
      kc.N = n;
      kc.M = c.N;
      AttentionProblem p(kc, 37);
      p.values = full_problem.values;  // the same keys and values; q: the last n rows of the full
      const size_t row = static_cast<size_t>(c.H) * c.D;
      p.values["q"].clear();
      for (int b = 0; b < c.B; ++b) {
        const auto& fq = full_problem.values.at("q");
        const auto first = fq.begin() + static_cast<int64_t>((b * c.N + c.N - n) * row);
        p.values["q"].insert(p.values["q"].end(), first, first + static_cast<int64_t>(n * row));
      }
      const auto r = p.run(ops, false);
      std::vector<double> want_out, want_lse;
      for (int b = 0; b < c.B; ++b)
        for (int t = c.N - n; t < c.N; ++t)
          for (size_t e = 0; e < row; ++e)
            want_out.push_back(full.out[(static_cast<size_t>(b) * c.N + t) * row + e]);
      for (int b = 0; b < c.B; ++b)
        for (int h = 0; h < c.H; ++h)
          for (int t = c.N - n; t < c.N; ++t)
            want_lse.push_back(full.lse[(static_cast<size_t>(b) * c.H + h) * c.N + t]);
      const double tol = dt == DType::f64 ? 1e-13 : 1e-6;
      const std::string what = kc.name() + " in " + dtype_name(dt);
      expect_close(r.out, want_out, tol, what + " out");
      expect_close(r.lse, want_lse, tol, what + " lse");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllSchemes, AttentionReferenceDecode, ::testing::ValuesIn(scheme_cases()),
                         scheme_case_name);

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

TEST(AttentionReference, RejectsInconsistentShapes) {
  CpuOps ops(DType::f64);
  AttentionCase c;  // B=2 N=7 H=3 D=4
  const int64_t HD = c.H * c.D;
  DeviceBuffer big = ops.float_buffer({c.B * 16 * 3 * HD});
  DeviceBuffer out = ops.float_buffer({c.B, c.N, c.H, c.D});
  DeviceBuffer lse = ops.float_buffer({c.B, c.H, c.N});
  auto attempt = [&](const std::function<void(AttentionShape&)>& change,
                     std::initializer_list<const char*> parts) {
    AttentionInputs in;
    in.shape = AttentionShape{c.B, c.N, c.H, c.D, 3 * HD};
    change(in.shape);
    in.q = in.k = in.v = big.tensor();
    expect_internal_error(
        [&] {
          cpu::attention_reference_forward<double>(in, out.tensor().ptr<double>(),
                                                   lse.tensor().ptr<double>());
        },
        parts);
  };
  attempt([](AttentionShape& s) { s.kv_len = 5; }, {"kv_len 5", "seq_len 7"});
  attempt([](AttentionShape& s) { s.kv_len = -1; }, {"kv_len -1"});
  attempt(
      [](AttentionShape& s) {
        s.head_begin = 2;
        s.local_heads = 2;
      },
      {"head range [2, 4)", "3 heads"});
  attempt([](AttentionShape& s) { s.head_begin = -1; }, {"head range", "head_begin -1"});
  attempt([](AttentionShape& s) { s.qkv_row_stride = 11; }, {"q's row stride", "H*D = 12"});
  attempt([](AttentionShape& s) { s.k_row_stride = 10; }, {"k's row stride 10", "H*D = 12"});
  attempt(
      [](AttentionShape& s) {
        s.local_heads = 2;
        s.v_row_stride = 7;
      },
      {"v's row stride 7", "Hl*D = 8"});
  attempt([](AttentionShape& s) { s.k_batch_stride = 4; }, {"k's batch stride 4", "H*D = 12"});
  attempt([](AttentionShape& s) { s.v_batch_stride = -3; }, {"v's batch stride"});
  {  // k holds fewer elements than B × kv_len keys
    AttentionInputs in;
    in.shape = AttentionShape{c.B, c.N, c.H, c.D, HD};
    in.shape.kv_len = 9;
    in.q = big.tensor();
    in.k = big.tensor().slice(0, {c.B * 8 * HD});
    in.v = big.tensor();
    expect_internal_error(
        [&] {
          cpu::attention_reference_forward<double>(in, out.tensor().ptr<double>(),
                                                   lse.tensor().ptr<double>());
        },
        {"k has shape", "B*kv_len*H*D = 216"});
  }
  {  // CpuOps sizes out by the local heads
    AttentionInputs in;
    in.shape = AttentionShape{c.B, c.N, c.H, c.D, HD};
    in.shape.local_heads = 2;
    in.q = in.k = in.v = big.tensor();
    expect_internal_error([&] { ops.attention_forward(in, out, lse, AttentionImpl::reference); },
                          {"attention_forward: out", "expected 112"});
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
  for (auto scheme : {PositionScheme::kerple, PositionScheme::fire})
    for (bool kv_and_heads : {false, true}) {
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
      if (kv_and_heads) {  // 19 queries over 45 keys, heads [1, 3)
        c.M = c.N;
        c.N = 19;
        c.head_begin = 1;
        c.local_heads = 2;
      }
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
      const std::string name = c.name();
      expect_bitwise_equal(two, two_again, name + ": two runs on 2 threads");
      expect_bitwise_equal(one, two, name + ": 1 thread vs 2");
      expect_bitwise_equal(one, three, name + ": 1 thread vs 3");
    }
}

}  // namespace
}  // namespace dape
