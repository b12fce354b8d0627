// RoPE: forward against the formula evaluated naively in double, and backward as the exact
// transpose of forward (⟨R x, y⟩ = ⟨x, Rᵀ y⟩), on the strided layout of a fused QKV buffer.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

struct RopeLayout {
  int B = 2, N = 9, H = 3, D = 6;
  int64_t stride() const { return 3 * int64_t{H} * D + 2; }  // q at 0, k at H·D, then padding
  int64_t size() const { return int64_t{B} * N * stride(); }
  AttentionShape shape() const { return AttentionShape{B, N, H, D, stride()}; }
};

// x' = x cos + rotate_half(x) sin at angle (pos_offset + n)·base^(−2k/D), on q's and k's columns.
std::vector<double> naive_rope(const RopeLayout& l, std::vector<double> x, int pos_offset,
                               double base) {
  const int half = l.D / 2;
  for (int b = 0; b < l.B; ++b)
    for (int n = 0; n < l.N; ++n)
      for (int part = 0; part < 2; ++part)  // q, then k
        for (int h = 0; h < l.H; ++h) {
          double* v = x.data() + (int64_t{b} * l.N + n) * l.stride() + part * l.H * l.D + h * l.D;
          std::vector<double> in(v, v + l.D);
          for (int d = 0; d < l.D; ++d) {
            const int k = d % half;
            const double angle = (pos_offset + n) * std::pow(base, -2.0 * k / l.D);
            const double rotated = d < half ? -in[d + half] : in[d - half];
            v[d] = in[d] * std::cos(angle) + rotated * std::sin(angle);
          }
        }
  return x;
}

template <class T>
std::vector<double> apply(const RopeLayout& l, const std::vector<double>& x, bool forward,
                          int pos_offset, double base) {
  CpuOps ops(dtype_of<T>());
  DeviceBuffer buf = ops.float_buffer({l.size()});
  ops.copy_from_host(buf, x.data(), DType::f64);
  const int64_t HD = int64_t{l.H} * l.D;
  Tensor q = buf.tensor().slice(0, {l.size() - 2 * HD});
  Tensor k = buf.tensor().slice(HD, {l.size() - 2 * HD});
  if (forward)
    ops.rope_forward(q, k, l.shape(), pos_offset, base);
  else
    ops.rope_backward(q, k, l.shape(), pos_offset, base);
  return download<double>(ops, buf);
}

TEST(Rope, ForwardMatchesTheFormula) {
  const RopeLayout l;
  const auto x = test::random_vector(l.size(), 3);
  for (int offset : {0, 5, 1000}) {
    const auto want = naive_rope(l, x, offset, 10000.0);
    EXPECT_LE(test::max_abs_diff(apply<double>(l, x, true, offset, 10000.0), want), 1e-14);
    EXPECT_LE(test::max_abs_diff(apply<float>(l, x, true, offset, 10000.0), want), 2e-6);
  }
  // Another base.
  EXPECT_LE(test::max_abs_diff(apply<double>(l, x, true, 3, 500.0), naive_rope(l, x, 3, 500.0)),
            1e-14);
}

TEST(Rope, LeavesPaddingColumnsAlone) {
  const RopeLayout l;
  const auto x = test::random_vector(l.size(), 4);
  const auto y = apply<double>(l, x, true, 0, 10000.0);
  const int64_t HD = int64_t{l.H} * l.D;
  for (int64_t r = 0; r < int64_t{l.B} * l.N; ++r)
    for (int64_t c = 2 * HD; c < l.stride(); ++c)
      EXPECT_EQ(y[r * l.stride() + c], x[r * l.stride() + c]);
}

TEST(Rope, BackwardIsTheTranspose) {
  const RopeLayout l;
  const auto x = test::random_vector(l.size(), 5);
  const auto y = test::random_vector(l.size(), 6);
  const auto Rx = apply<double>(l, x, true, 7, 10000.0);
  const auto Rty = apply<double>(l, y, false, 7, 10000.0);
  double lhs = 0, rhs = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    lhs += Rx[i] * y[i];
    rhs += x[i] * Rty[i];
  }
  EXPECT_NEAR(lhs, rhs, 1e-12 * std::max(1.0, std::fabs(lhs)));
  // A rotation: the transpose undoes it.
  EXPECT_LE(test::max_abs_diff(apply<double>(l, Rx, false, 7, 10000.0), x), 1e-14);
}

TEST(Rope, RejectsAnOddHeadDimension) {
  RopeLayout l;
  l.D = 5;
  const auto x = test::random_vector(l.size(), 7);
  EXPECT_THROW(apply<double>(l, x, true, 0, 10000.0), InternalError);
}

}  // namespace
}  // namespace dape
