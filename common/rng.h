/*
 * A small counter-based random generator (SplitMix64) with an explicit, saveable state.
 *
 * Reproducibility is the point: a stream is (seed, stream id), and its whole state is one
 * 64-bit counter, so a checkpoint can store it and a resumed run continues the same sequence.
 * Independent streams (parameter init per tensor, data order per epoch) come from distinct
 * stream ids rather than from one shared generator, so the values a tensor gets do not depend
 * on what else was drawn before it. Not for cryptography.
 */
#pragma once

#include <cmath>
#include <cstdint>

namespace dape {

inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  Rng(uint64_t seed, uint64_t stream = 0)
      : key_(splitmix64_mix(seed ^ splitmix64_mix(stream + 0x5851F42D4C957F2Dull))) {}

  uint64_t next_u64() { return splitmix64_mix(key_ + (counter_++) * 0x9E3779B97F4A7C15ull); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Standard normal by Box-Muller; uses exactly two draws per value.
  double normal() {
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return static_cast<uint64_t>(uniform() * static_cast<double>(n)); }

  uint64_t counter() const { return counter_; }
  void set_counter(uint64_t c) { counter_ = c; }

 private:
  uint64_t key_;
  uint64_t counter_ = 0;
};

}  // namespace dape
