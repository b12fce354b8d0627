#include "core/model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "common/check.h"

namespace dape {

Sampler::Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed, 0) {
  if (!std::isfinite(options.temperature) || options.temperature < 0)
    fail("sampling temperature must be a finite number >= 0 (0: greedy), got {}",
         options.temperature);
  if (options.top_k < 0) fail("top-k must be >= 0 (0: every token), got {}", options.top_k);
}

int32_t Sampler::next(std::span<const float> logits) {
  const int V = static_cast<int>(logits.size());
  DAPE_CHECK(V >= 1, "sampling from an empty row of logits");
  for (int i = 0; i < V; ++i)
    if (!std::isfinite(logits[i]))
      fail(
          "the model produced a non-finite logit ({}) for token id {}: the checkpoint's weights "
          "are not usable",
          logits[i], i);
  // Greedy: the first maximum.
  if (options_.temperature == 0)
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());

  // The candidates: every id, or the top_k highest logits (stable: lower ids first on ties).
  std::vector<int32_t> ids(V);
  std::iota(ids.begin(), ids.end(), 0);
  if (options_.top_k > 0 && options_.top_k < V) {
    std::partial_sort(ids.begin(), ids.begin() + options_.top_k, ids.end(),
                      [&](int32_t a, int32_t b) {
                        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
                      });
    ids.resize(options_.top_k);
    std::sort(ids.begin(), ids.end());  // the CDF runs in id order
  }
  double top = -INFINITY;
  for (int32_t id : ids) top = std::max(top, static_cast<double>(logits[id]));
  std::vector<double> weights(ids.size());
  double total = 0;
  for (size_t c = 0; c < ids.size(); ++c) {
    weights[c] = std::exp((static_cast<double>(logits[ids[c]]) - top) / options_.temperature);
    total += weights[c];
  }
  const double u = rng_.uniform() * total;  // total >= 1: the maximum's weight is exp(0)
  double cumulative = 0;
  for (size_t c = 0; c < ids.size(); ++c) {
    cumulative += weights[c];
    if (u < cumulative) return ids[c];
  }
  // Rounding can leave u at the very top of the CDF: the last candidate with any weight.
  for (size_t c = ids.size(); c-- > 0;)
    if (weights[c] > 0) return ids[c];
  return ids.back();
}

}  // namespace dape
