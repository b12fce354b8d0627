#include "core/data/sample_order.h"

#include "common/check.h"
#include "common/rng.h"

namespace dape::data {

namespace {

constexpr int kFeistelRounds = 6;

uint64_t round_key(uint64_t epoch_key, int round) {
  return splitmix64_mix(epoch_key ^
                        splitmix64_mix(static_cast<uint64_t>(round) + 0x632BE59BD9B4E019ull));
}

}  // namespace

SampleOrder::SampleOrder(uint64_t seed, int64_t num_samples)
    : seed_(seed), num_samples_(num_samples) {
  if (num_samples < 1)
    fail("sample order: the number of samples must be >= 1, got {}", num_samples);
  // Smallest k >= 1 with 4^k >= S; S < 2^63 gives k <= 32 and a domain of at most 2^64.
  half_bits_ = 1;
  while (half_bits_ < 32 && (uint64_t{1} << (2 * half_bits_)) < static_cast<uint64_t>(num_samples))
    ++half_bits_;
  half_mask_ = (uint64_t{1} << half_bits_) - 1;
}

uint64_t SampleOrder::encrypt(uint64_t x, uint64_t epoch_key) const {
  uint64_t left = x >> half_bits_, right = x & half_mask_;
  for (int r = 0; r < kFeistelRounds; ++r) {
    const uint64_t f = splitmix64_mix(right ^ round_key(epoch_key, r)) & half_mask_;
    const uint64_t next_right = left ^ f;
    left = right;
    right = next_right;
  }
  return (left << half_bits_) | right;
}

int64_t SampleOrder::permute(int64_t epoch, int64_t position) const {
  if (epoch < 0 || position < 0 || position >= num_samples_) {
    fail("sample order: position {} of epoch {} is outside [0, {}) or the epoch is negative",
         position, epoch, num_samples_);
  }
  const uint64_t epoch_key =
      splitmix64_mix(splitmix64_mix(seed_) ^ (static_cast<uint64_t>(epoch) * 0x9E3779B97F4A7C15ull +
                                              0xD1B54A32D192ED03ull));
  auto x = static_cast<uint64_t>(position);
  do {
    x = encrypt(x, epoch_key);
  } while (x >= static_cast<uint64_t>(num_samples_));
  return static_cast<int64_t>(x);
}

int64_t SampleOrder::sample_at(int64_t global_index) const {
  if (global_index < 0) fail("sample order: global index {} is negative", global_index);
  return permute(global_index / num_samples_, global_index % num_samples_);
}

IndexRange global_batch_range(int64_t step, int64_t global_batch) {
  if (step < 0) fail("global batch: step {} is negative", step);
  if (global_batch < 1) fail("global batch: size {} must be >= 1", global_batch);
  return {step * global_batch, (step + 1) * global_batch};
}

IndexRange rank_slice(int64_t step, int64_t global_batch, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) {
    fail("data-parallel rank {} is outside [0, {})", rank, world);
  }
  const IndexRange all = global_batch_range(step, global_batch);
  return {all.begin + rank * global_batch / world, all.begin + (rank + 1) * global_batch / world};
}

}  // namespace dape::data
