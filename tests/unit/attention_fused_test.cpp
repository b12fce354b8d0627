// The fused attention against the materialized reference (itself checked against finite
// differences and the golden files): forward, lse and every gradient, for every scheme with and
// without DAPE, at lengths around the tile sizes and up to 1000, with keys beyond the queries,
// separate padded k/v buffers and head ranges; and bitwise reproducibility.
#include <gtest/gtest.h>

#include <omp.h>

#include "kernels/cpu/cpu_ops.h"
#include "tests/unit/attention_problem.h"

namespace dape {
namespace {

using test::AttentionCase;
using test::AttentionProblem;

// Every output of two runs agrees to `tol` · max(1, max|reference|); f's weight gradients to
// `f_tol`. In float32 those are sums over all N(N+1)/2 pairs of terms that cancel heavily (the
// rows of dA sum to zero), so both implementations sit ~5e-5 (relative to the largest entry)
// from the float64 result at N = 1000, and they are held to 1e-4 instead of 1e-5 there.
void expect_agree(const AttentionProblem::Result& fused, const AttentionProblem::Result& ref,
                  double tol, double f_tol, const std::string& what) {
  EXPECT_LE(test::scaled_error(fused.out, ref.out), tol) << what << ": out";
  EXPECT_LE(test::scaled_error(fused.lse, ref.lse), tol) << what << ": lse";
  ASSERT_EQ(fused.grads.size(), ref.grads.size()) << what;
  for (const auto& [name, g] : ref.grads) {
    const bool f_weight = name == "dape_w1" || name == "dape_w2";
    EXPECT_LE(test::scaled_error(fused.grads.at(name), g), f_weight ? f_tol : tol)
        << what << ": grad " << name;
  }
  EXPECT_TRUE(fused.padding_intact) << what << ": wrote outside dq, dk or dv";
}

std::vector<AttentionCase> every_scheme(int B, int N, int H, int D) {
  std::vector<AttentionCase> cases;
  for (auto s : {PositionScheme::none, PositionScheme::rope, PositionScheme::alibi,
                 PositionScheme::kerple, PositionScheme::fire})
    for (bool dape : {false, true}) {
      AttentionCase c;
      c.scheme = s;
      c.dape = dape;
      c.B = B;
      c.N = N;
      c.H = H;
      c.D = D;
      c.fire_L = 20.0f;  // thresholds inside the lengths tested: both sides of max(i, thr)
      c.fire_leaky = dape;
      cases.push_back(c);
    }
  return cases;
}

class FusedAgreesWithReference : public ::testing::TestWithParam<int> {};

TEST_P(FusedAgreesWithReference, EverySchemeInFloatAndDouble) {
  const int N = GetParam();
  const int B = N >= 500 ? 1 : 2;
  for (const auto& c : every_scheme(B, N, 3, 8)) {
    AttentionProblem p(c, 40 + N);
    for (DType dt : {DType::f32, DType::f64}) {
      CpuOps ops(dt, 2);
      const auto ref = p.run(ops, true, 0.25, AttentionImpl::reference);
      const auto fused = p.run(ops, true, 0.25, AttentionImpl::fused);
      if (dt == DType::f64)
        expect_agree(fused, ref, 1e-11, 1e-11, c.name() + " f64");
      else
        expect_agree(fused, ref, 1e-5, 1e-4, c.name() + " f32");
    }
  }
}

std::string length_name(const ::testing::TestParamInfo<int>& p) {
  return fmt::format("N{}", p.param);
}

INSTANTIATE_TEST_SUITE_P(Lengths, FusedAgreesWithReference,
                         ::testing::Values(1, 2, 63, 64, 65, 127, 1000), length_name);

// Decoding (keys beyond the queries), separate padded k/v buffers, and head ranges.
TEST(FusedAttention, KeyOffsetsStridesAndHeadRangesMatchTheReference) {
  std::vector<AttentionCase> cases;
  for (auto c : every_scheme(2, 5, 4, 8)) {
    AttentionCase decode = c;
    decode.M = 70;  // 5 queries at positions 65..69: a key block boundary inside the keys
    cases.push_back(decode);
    AttentionCase one = c;
    one.N = 1;
    one.M = 130;
    cases.push_back(one);
    AttentionCase separate = c;
    separate.N = 66;
    separate.separate_kv = true;
    cases.push_back(separate);
    AttentionCase heads = c;
    heads.N = 40;
    heads.head_begin = 1;
    heads.local_heads = 2;
    cases.push_back(heads);
  }
  CpuOps ops(DType::f64, 2);
  for (const auto& c : cases) {
    AttentionProblem p(c, 7);
    expect_agree(p.run(ops, true, 0.0, AttentionImpl::fused),
                 p.run(ops, true, 0.0, AttentionImpl::reference), 1e-11, 1e-11, c.name());
  }
}

TEST(FusedAttention, BitwiseReproducibleForAFixedThreadCount) {
  AttentionCase c;
  c.scheme = PositionScheme::kerple;
  c.dape = true;
  c.B = 3;
  c.N = 150;
  c.H = 4;
  c.D = 16;
  AttentionProblem p(c, 3);
  CpuOps ops(DType::f32, 2);
  const auto a = p.run(ops, true, 0.0, AttentionImpl::fused);
  const auto b = p.run(ops, true, 0.0, AttentionImpl::fused);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.lse, b.lse);
  EXPECT_EQ(a.grads, b.grads);
  // The forward pass and dq do not depend on the thread count at all, nor do the parameter
  // gradients (reduced from per-task partials in task order).
  CpuOps one(DType::f32, 1);
  const auto s = p.run(one, true, 0.0, AttentionImpl::fused);
  omp_set_num_threads(2);
  EXPECT_EQ(s.out, a.out);
  EXPECT_EQ(s.lse, a.lse);
  EXPECT_EQ(s.grads.at("q"), a.grads.at("q"));
  for (const char* name : {"kerple_p", "kerple_a", "dape_w1", "dape_b1", "dape_w2", "dape_b2"})
    EXPECT_EQ(s.grads.at(name), a.grads.at(name)) << name;
}

// A sequence's output, log-sum-exp and dq do not depend on the other sequences of its batch:
// the same bits alone as in a batch of three, with either implementation (a model's loss on a
// sequence is thus the same at any micro-batch size). So are the reference's dk and dv; the fused
// kernel's dk and dv are summed from per-thread buffers whose share of the work depends on the
// batch (attention_fused.h), so they agree to rounding only.
TEST(FusedAttention, ASequenceIsBitwiseIndependentOfItsBatch) {
  AttentionCase c;
  c.scheme = PositionScheme::kerple;
  c.dape = true;
  c.B = 3;
  c.N = 97;
  c.H = 4;
  c.D = 16;
  AttentionProblem batch(c, 5);
  AttentionCase c1 = c;
  c1.B = 1;
  AttentionProblem alone(c1, 5);
  const int pick = 1;  // the middle sequence
  auto slice = [&](const std::vector<double>& v) {
    const size_t per = v.size() / c.B;
    return std::vector<double>(v.begin() + pick * per, v.begin() + (pick + 1) * per);
  };
  alone.values = batch.values;  // the same parameters; q, k, v of the picked sequence only
  for (const char* name : {"q", "k", "v"}) alone.values[name] = slice(batch.values.at(name));
  alone.grad_out = slice(batch.grad_out);
  CpuOps ops(DType::f32, 2);
  for (AttentionImpl impl : {AttentionImpl::fused, AttentionImpl::reference}) {
    const char* what = impl == AttentionImpl::fused ? "fused" : "reference";
    const auto b = batch.run(ops, true, 0.0, impl);
    const auto a = alone.run(ops, true, 0.0, impl);
    EXPECT_EQ(a.out, slice(b.out)) << what;
    EXPECT_EQ(a.lse, slice(b.lse)) << what;
    EXPECT_EQ(a.grads.at("q"), slice(b.grads.at("q"))) << what;
    for (const char* name : {"k", "v"}) {
      const auto want = slice(b.grads.at(name));
      if (impl == AttentionImpl::reference) {
        EXPECT_EQ(a.grads.at(name), want) << what << " d" << name;
      } else {
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_NEAR(a.grads.at(name)[i], want[i], 1e-5)
              << what << " d" << name << "[" << i << "]";
      }
    }
  }
}

}  // namespace
}  // namespace dape
