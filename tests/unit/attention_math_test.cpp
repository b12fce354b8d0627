// The scalar math of kernels/attention_math.h: ALiBi slopes against a port of the reference
// get_slopes, and every derivative against finite differences in double.
#include "kernels/attention_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

namespace dape {
namespace {

namespace am = attention_math;

// The ALiBi reference implementation, line for line.
std::vector<double> reference_get_slopes(int n) {
  auto power_of_2 = [](int m) {
    const double start = std::pow(2.0, -std::pow(2.0, -(std::log2(m) - 3)));
    std::vector<double> s;
    for (int i = 0; i < m; ++i) s.push_back(start * std::pow(start, i));
    return s;
  };
  if (std::floor(std::log2(n)) == std::log2(n)) return power_of_2(n);
  const int closest = 1 << static_cast<int>(std::floor(std::log2(n)));
  std::vector<double> s = power_of_2(closest);
  const std::vector<double> extra = reference_get_slopes(2 * closest);
  for (int i = 0; static_cast<int>(s.size()) < n; i += 2) s.push_back(extra[i]);
  return s;
}

TEST(AttentionMath, AlibiSlopesMatchTheReferenceForAnyHeadCount) {
  for (int H = 1; H <= 96; ++H) {
    const auto want = reference_get_slopes(H);
    for (int h = 0; h < H; ++h) {
      EXPECT_NEAR(am::alibi_slope<double>(h, H), want[h], 1e-14 * want[h])
          << "H=" << H << " h=" << h;
      EXPECT_NEAR(am::alibi_slope<float>(h, H), want[h], 1e-7 * want[h]) << "H=" << H << " h=" << h;
    }
  }
  // Known values: H = 6 takes 4 slopes of 2^(-2(h+1)) and the 1st and 3rd of H = 8.
  EXPECT_DOUBLE_EQ(am::alibi_slope<double>(4, 6), std::pow(2.0, -1.0));
  EXPECT_DOUBLE_EQ(am::alibi_slope<double>(5, 6), std::pow(2.0, -3.0));
  EXPECT_DOUBLE_EQ(am::alibi_slope<double>(0, 12), std::pow(2.0, -1.0));
}

double central(const std::function<double(double)>& f, double x, double h = 1e-6) {
  return (f(x + h) - f(x - h)) / (2 * h);
}

TEST(AttentionMath, KerpleDerivatives) {
  for (double p : {0.05, 0.7, 1.9})
    for (double a : {0.02, 0.4, 1.0})
      for (double r : {0.0, 1.0, 17.0, 300.0}) {
        EXPECT_NEAR(am::kerple_bias_dp(a, r),
                    central([&](double x) { return am::kerple_bias(x, a, r); }, p), 1e-8);
        EXPECT_NEAR(am::kerple_bias_da(p, a, r),
                    central([&](double x) { return am::kerple_bias(p, x, r); }, a), 1e-7);
        EXPECT_NEAR(am::kerple_bias(p, a, r), -p * std::log(1 + a * r), 1e-15);
      }
  EXPECT_EQ(am::kerple_clamp(0.003), 1e-2);
  EXPECT_EQ(am::kerple_clamp(-1.0), 1e-2);
  EXPECT_EQ(am::kerple_clamp(0.5), 0.5);
}

// u(i, j) written out independently: ψ(i−j) / (ψ(max(i, |m·L|)) + eps).
double fire_u(double pos, double rel, double c, double mult, double L) {
  const double psi_rel = std::log(std::fabs(c * rel) + 1);
  const double m = std::max(pos, std::fabs(mult * L));
  return psi_rel / (std::log(std::fabs(c * m) + 1) + 1e-6);
}

TEST(AttentionMath, FireDistanceAndDerivatives) {
  const double L = 10.0;
  for (double c : {0.1, 0.7, -0.4})
    for (double mult : {0.55, 1.3, -0.8})       // thresholds 5.5, 13, 8
      for (double pos : {0.0, 3.0, 9.0, 40.0})  // below and above every threshold
        for (double rel_frac : {0.0, 0.5, 1.0}) {
          const double rel = std::floor(pos * rel_frac);
          const auto f = am::fire_distance<double>(pos, rel, c, mult, L, 1e-6);
          EXPECT_NEAR(f.u, fire_u(pos, rel, c, mult, L), 1e-14);
          const double dc =
              central([&](double x) { return fire_u(pos, rel, x, mult, L); }, c, 1e-7);
          const double dm =
              central([&](double x) { return fire_u(pos, rel, c, x, L); }, mult, 1e-7);
          EXPECT_NEAR(f.du_dc, dc, 1e-7) << "c=" << c << " mult=" << mult << " pos=" << pos;
          EXPECT_NEAR(f.du_dmult, dm, 1e-7) << "c=" << c << " mult=" << mult << " pos=" << pos;
        }
}

TEST(AttentionMath, FireTieSplitsTheThresholdGradientInHalf) {
  // pos = 8 = |0.8 · 10|: torch.max(a, b) sends half the gradient to each side.
  const double pos = 8, rel = 5, c = 0.3, mult = 0.8, L = 10, h = 1e-7;
  const auto f = am::fire_distance<double>(pos, rel, c, mult, L, 1e-6);
  auto u = [&](double m) { return fire_u(pos, rel, c, m, L); };
  const double right = (u(mult + h) - u(mult)) / h;  // threshold above pos: full gradient
  const double left = (u(mult) - u(mult - h)) / h;   // threshold below pos: none
  EXPECT_NEAR(left, 0.0, 1e-6);
  EXPECT_GT(std::fabs(right), 1e-3);
  EXPECT_NEAR(f.du_dmult, 0.5 * (left + right), 1e-6);
  EXPECT_EQ(am::fire_normalizer_position_dthr(8.0, 8.0), 0.5);
}

TEST(AttentionMath, ActivationsAndTheirDerivativesAtTheKink) {
  EXPECT_EQ(am::leaky_relu(-2.0), -0.02);
  EXPECT_EQ(am::leaky_relu(3.0), 3.0);
  EXPECT_EQ(am::leaky_relu_grad(0.0), 0.01);  // PyTorch: slope where x <= 0
  EXPECT_EQ(am::leaky_relu_grad(1e-30), 1.0);
  EXPECT_EQ(am::relu(-2.0), 0.0);
  EXPECT_EQ(am::relu_grad(0.0), 0.0);  // PyTorch: 0 where x <= 0
  EXPECT_EQ(am::relu_grad(2.0), 1.0);
  EXPECT_EQ(am::activation(-1.0f, true), -0.01f);
  EXPECT_EQ(am::activation(-1.0f, false), 0.0f);
  EXPECT_EQ(am::sign(0.0), 0.0);
}

}  // namespace
}  // namespace dape
