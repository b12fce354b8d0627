/*
 * The order in which training samples are seen, over all epochs, in O(1) memory.
 *
 * The training stream of T tokens is cut into S = (T − 1) / seq_len samples; sample s covers
 * tokens [s·seq_len, s·seq_len + seq_len], seq_len + 1 tokens whose first seq_len are the inputs
 * and last seq_len the targets (neighbouring samples share one boundary token). Global index g
 * (counting samples from the start of training) is epoch e = g / S, position p = g % S, and
 * reads sample π_e(p), where π_e is a pseudo-random permutation of [0, S) keyed by (seed, e).
 *
 * π_e is a keyed Feistel network rather than a shuffled array: S reaches ~10⁹ on Books3, and an
 * array would cost gigabytes per epoch and a checkpoint entry to resume. The network permutes
 * [0, 4^k), the smallest power of 4 >= S (so both Feistel halves have k bits), with 6 rounds
 * whose round functions hash (seed, epoch, round, half) with SplitMix64; values >= S are
 * re-encrypted until they land in [0, S) ("cycle walking", which stays a bijection on [0, S)
 * and takes at most 4 steps on average since 4^k <= 4S). Each call costs about 20 ns (a few
 * dozen multiplications; bench/data_bench) and needs no state, so any g can be mapped directly:
 * resuming at step n is free.
 *
 * The order depends only on (seed, S). A global batch is the list of global indices
 * [step·GB, (step+1)·GB), and data-parallel rank r of R takes the contiguous slice
 * [step·GB + r·GB/R, step·GB + (r+1)·GB/R): DP = 1 and DP = 4 see the same samples in the same
 * global batches, and a checkpoint resumes at another DP size.
 */
#pragma once

#include <cstdint>

namespace dape::data {

class SampleOrder {
 public:
  // num_samples >= 1.
  SampleOrder(uint64_t seed, int64_t num_samples);

  int64_t num_samples() const { return num_samples_; }
  uint64_t seed() const { return seed_; }
  // π_epoch(position), for epoch >= 0 and position in [0, num_samples).
  int64_t permute(int64_t epoch, int64_t position) const;
  // The sample read at global index g >= 0: π_{g / S}(g % S).
  int64_t sample_at(int64_t global_index) const;

 private:
  uint64_t encrypt(uint64_t x, uint64_t epoch_key) const;

  uint64_t seed_;
  int64_t num_samples_;
  int half_bits_;
  uint64_t half_mask_;
};

// A half-open range of global sample indices.
struct IndexRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

// The global indices of global batch `step`: [step·global_batch, (step+1)·global_batch).
IndexRange global_batch_range(int64_t step, int64_t global_batch);
// Rank `rank` of `world`'s part of global batch `step`: the contiguous slice
// [r·GB/R, (r+1)·GB/R) of it (integer division; slices differ in size by at most one when R does
// not divide GB). The slices of all ranks tile the global batch exactly.
IndexRange rank_slice(int64_t step, int64_t global_batch, int rank, int world);

}  // namespace dape::data
