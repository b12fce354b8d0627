// The sampler: greedy picks, reproducibility by seed, and the drawn frequencies against the
// softmax they should follow (with temperature and top-k), within a few standard deviations.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/model/sampler.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

TEST(Sampler, GreedyTakesTheFirstMaximum) {
  Sampler s({.temperature = 0});
  EXPECT_EQ(s.next(std::vector<float>{0.5f, 3.0f, -1.0f, 2.0f}), 1);
  EXPECT_EQ(s.next(std::vector<float>{1.0f, 4.0f, 4.0f, 2.0f}), 1);  // tie: the lower id
  EXPECT_EQ(s.next(std::vector<float>{7.0f}), 0);
  EXPECT_EQ(s.draws(), 0u);  // greedy draws nothing
}

TEST(Sampler, TheSameSeedGivesTheSameTokens) {
  const std::vector<float> logits{0.1f, 0.4f, -0.3f, 0.9f, 0.0f, 0.2f};
  auto run = [&](uint64_t seed) {
    Sampler s({.temperature = 1.0, .top_k = 0, .seed = seed});
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.next(logits));
    return out;
  };
  EXPECT_EQ(run(3), run(3));
  EXPECT_NE(run(3), run(4));
}

// Draws n tokens and checks each id's frequency against p within 5 standard deviations.
void expect_frequencies(Sampler& s, const std::vector<float>& logits, const std::vector<double>& p,
                        int n) {
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++counts.at(s.next(logits));
  for (size_t id = 0; id < p.size(); ++id) {
    const double sd = std::sqrt(n * p[id] * (1 - p[id]));
    EXPECT_NEAR(counts[id], n * p[id], 5 * sd + 1e-9) << "token " << id;
  }
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature,
                            const std::vector<bool>& keep) {
  std::vector<double> p(logits.size(), 0.0);
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i)
    if (keep[i]) total += p[i] = std::exp(logits[i] / temperature);
  for (auto& x : p) x /= total;
  return p;
}

TEST(Sampler, FrequenciesFollowTheSoftmaxAtTheTemperature) {
  const std::vector<float> logits{0.0f, 1.0f, 2.0f, -1.0f, 0.5f};
  const std::vector<bool> all(logits.size(), true);
  for (double t : {1.0, 0.5, 2.0}) {
    Sampler s({.temperature = t, .top_k = 0, .seed = 11});
    expect_frequencies(s, logits, softmax(logits, t, all), 40000);
  }
}

TEST(Sampler, TopKKeepsOnlyTheHighestLogits) {
  const std::vector<float> logits{0.0f, 1.0f, 2.0f, -1.0f, 1.0f, 0.5f};
  Sampler s({.temperature = 1.0, .top_k = 3, .seed = 5});
  // The top 3: ids 2 (2.0), 1 and 4 (1.0 each; the tie at the third place is inside).
  expect_frequencies(s, logits, softmax(logits, 1.0, {false, true, true, false, true, false}),
                     40000);
  Sampler two({.temperature = 1.0, .top_k = 2, .seed = 5});
  // A tie at the cut keeps the lower id: 2 and 1.
  expect_frequencies(two, logits, softmax(logits, 1.0, {false, true, true, false, false, false}),
                     20000);
  Sampler one({.temperature = 5.0, .top_k = 1, .seed = 5});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(one.next(logits), 2);
  Sampler wide({.temperature = 1.0, .top_k = 100, .seed = 5});  // more than the vocabulary
  const std::vector<bool> all(logits.size(), true);
  expect_frequencies(wide, logits, softmax(logits, 1.0, all), 20000);
}

TEST(Sampler, ExtremeLogitsStayFinite) {
  // Logits far apart at a low temperature: the probabilities underflow to one token, no NaN.
  Sampler s({.temperature = 0.01, .top_k = 0, .seed = 1});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.next(std::vector<float>{-1e30f, 80.0f, 1e3f}), 2);
}

TEST(Sampler, RejectsBadOptionsAndNonFiniteLogits) {
  test::expect_error([] { Sampler s({.temperature = -0.5}); }, {"temperature", "-0.5"});
  test::expect_error([] { Sampler s({.temperature = std::nan("")}); }, {"temperature"});
  test::expect_error([] { Sampler s({.temperature = 1.0, .top_k = -2}); }, {"top-k", "-2"});
  Sampler s({.temperature = 1.0});
  test::expect_error(
      [&] {
        s.next(std::vector<float>{0.0f, std::nanf(""), 1.0f});
      },
      {"non-finite logit", "token id 1"});
  Sampler g({.temperature = 0});
  test::expect_error(
      [&] {
        g.next(std::vector<float>{0.0f, std::numeric_limits<float>::infinity()});
      },
      {"non-finite logit"});
}

}  // namespace
}  // namespace dape
