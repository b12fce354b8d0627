/*
 * Sampler: picks the next token from a row of logits.
 *
 * Temperature 0 is greedy: the highest logit, ties to the lowest id. Otherwise the token is drawn
 * from softmax(logits / temperature), restricted to the top_k highest logits when top_k > 0
 * (ties at the k-th value kept in id order), by the inverse CDF of one uniform draw from an
 * Rng(seed) stream whose counter advances once per token: the same model, prompt and options
 * give the same text on any machine that computes the same logits. Probabilities are formed in
 * double from the logits minus their maximum, so no temperature overflows. A non-finite logit
 * (a diverged checkpoint) is an error, not a silent pick.
 */
#pragma once

#include <cstdint>
#include <span>

#include "common/rng.h"

namespace dape {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy
  int top_k = 0;             // 0: every token
  uint64_t seed = 0;
};

class Sampler {
 public:
  // Throws dape::Error on a negative or non-finite temperature or a negative top_k.
  explicit Sampler(const SamplingOptions& options);

  // The next token id, in [0, logits.size()).
  int32_t next(std::span<const float> logits);

  // Draws taken so far (one per sampled token; none when greedy).
  uint64_t draws() const { return rng_.counter(); }

 private:
  SamplingOptions options_;
  Rng rng_;
};

}  // namespace dape
