/*
 * The vectorizable float exp, erf and normal CDF (kernels/cpu/vector_math.h) against the std::
 * functions in double. The bounds are the ones the header documents, measured there over every
 * float of each range; here every 1021st float (by bit pattern) is checked, plus the special
 * values.
 */
#include "kernels/cpu/vector_math.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

namespace dape {
namespace {

constexpr uint32_t kStride = 1021;
constexpr float kMinNormal = std::numeric_limits<float>::min();

// Every kStride-th float in [lo, hi] (walked separately on each side of zero).
std::vector<float> sample_floats(float lo, float hi) {
  std::vector<float> xs;
  auto walk = [&](float a, float b) {
    uint32_t ua = std::bit_cast<uint32_t>(a), ub = std::bit_cast<uint32_t>(b);
    if (ua > ub) std::swap(ua, ub);
    for (uint64_t u = ua; u <= ub; u += kStride) xs.push_back(std::bit_cast<float>(uint32_t(u)));
  };
  if (lo < 0) walk(lo, hi < 0 ? hi : -0.0f);
  if (hi > 0) walk(lo > 0 ? lo : 0.0f, hi);
  return xs;
}

struct WorstError {
  double error = 0;
  float at = 0;
};

// max over xs of err(f(x), ref(x), x), with f inlined into a vectorizable loop as the kernels
// use it.
template <class F>
WorstError worst_error(const std::vector<float>& xs, F f, const std::function<double(double)>& ref,
                       const std::function<double(float, double, float)>& err) {
  std::vector<float> ys(xs.size());
#pragma omp simd
  for (size_t i = 0; i < xs.size(); ++i) ys[i] = f(xs[i]);
  WorstError w;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double e = err(ys[i], ref(xs[i]), xs[i]);
    if (!(e <= w.error)) w = {e, xs[i]};  // also catches NaN
  }
  return w;
}

double relative(float y, double r, float) {
  return std::fabs(y - r) / std::fabs(r);
}
double absolute(float y, double r, float) {
  return std::fabs(y - r);
}

constexpr auto exp_f = [](float x) { return cpu::vec_exp(x); };
constexpr auto erf_f = [](float x) { return cpu::vec_erf(x); };
constexpr auto cdf_f = [](float x) { return cpu::vec_normal_cdf(x); };
constexpr auto gelu_f = [](float x) { return x * cpu::vec_normal_cdf(x); };
double cdf_d(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0));
}

TEST(VectorMath, ExpWithinDocumentedError) {
  auto w = worst_error(
      sample_floats(-87.33f, 88.72f), exp_f, [](double x) { return std::exp(x); }, relative);
  EXPECT_LE(w.error, 8.5e-8) << "at x = " << w.at;
}

TEST(VectorMath, ErfWithinDocumentedError) {
  auto all = worst_error(
      sample_floats(-12.0f, 12.0f), erf_f, [](double x) { return std::erf(x); }, absolute);
  // The bounds of builds without fused multiply-add contraction (vector_math.h), which hold for
  // every build.
  EXPECT_LE(all.error, 1.52e-7) << "absolute, at x = " << all.at;
  auto small = worst_error(
      sample_floats(kMinNormal, 1.0f), erf_f, [](double x) { return std::erf(x); }, relative);
  EXPECT_LE(small.error, 1.83e-7) << "relative, at x = " << small.at;
  auto negative = worst_error(
      sample_floats(-1.0f, -kMinNormal), erf_f, [](double x) { return std::erf(x); }, relative);
  EXPECT_LE(negative.error, 1.83e-7) << "relative, at x = " << negative.at;
}

TEST(VectorMath, NormalCdfWithinDocumentedError) {
  auto rel = worst_error(sample_floats(-13.0f, 20.0f), cdf_f, cdf_d, relative);
  EXPECT_LE(rel.error, 5.0e-7) << "relative, at x = " << rel.at;
  auto abs = worst_error(sample_floats(-40.0f, 40.0f), cdf_f, cdf_d, absolute);
  EXPECT_LE(abs.error, 1.06e-7) << "absolute, at x = " << abs.at;
  auto gelu = worst_error(
      sample_floats(-40.0f, 40.0f), gelu_f, [](double x) { return x * cdf_d(x); },
      [](float y, double r, float x) { return std::fabs(y - r) / std::max(1.0f, std::fabs(x)); });
  EXPECT_LE(gelu.error, 1.13e-7) << "GELU, at x = " << gelu.at;
}

TEST(VectorMath, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(cpu::vec_exp(0.0f), 1.0f);
  EXPECT_EQ(cpu::vec_exp(-inf), 0.0f);
  EXPECT_EQ(cpu::vec_exp(-100.0f), 0.0f);
  EXPECT_EQ(cpu::vec_exp(inf), inf);
  EXPECT_EQ(cpu::vec_exp(89.0f), inf);
  EXPECT_TRUE(std::isfinite(cpu::vec_exp(88.72f)));
  EXPECT_TRUE(std::isnan(cpu::vec_exp(nan)));

  EXPECT_EQ(cpu::vec_erf(0.0f), 0.0f);
  EXPECT_EQ(cpu::vec_erf(inf), 1.0f);
  EXPECT_EQ(cpu::vec_erf(-inf), -1.0f);
  EXPECT_EQ(cpu::vec_erf(5.0f), 1.0f);
  EXPECT_TRUE(std::isnan(cpu::vec_erf(nan)));

  EXPECT_EQ(cpu::vec_normal_cdf(0.0f), 0.5f);
  EXPECT_EQ(cpu::vec_normal_cdf(inf), 1.0f);
  EXPECT_EQ(cpu::vec_normal_cdf(-inf), 0.0f);
  EXPECT_EQ(cpu::vec_normal_cdf(-20.0f), 0.0f);
  EXPECT_TRUE(std::isnan(cpu::vec_normal_cdf(nan)));
}

}  // namespace
}  // namespace dape
