/*
 * TrainBatchSource: the training samples of a TokenStream in SampleOrder, as int32 input and
 * target rows ready for the embedding and the cross-entropy.
 *
 * Row i of a fill holds global index first + i: sample s = order.sample_at(first + i), whose
 * inputs are tokens [s·L, s·L + L) and targets tokens [s·L + 1, s·L + L] of the stream (L =
 * seq_len). Each row is read straight from the memory-mapped shards with no intermediate buffer.
 * A source holds a reference to its stream and no other state, so ranks, threads and resumed
 * runs fill identical rows for identical indices.
 */
#pragma once

#include <cstdint>

#include "core/data/sample_order.h"
#include "core/data/token_stream.h"

namespace dape::data {

class TrainBatchSource {
 public:
  // `stream` must outlive the source. Throws dape::Error when seq_len < 1 or the stream holds
  // fewer than seq_len + 1 tokens (no complete sample).
  TrainBatchSource(const TokenStream& stream, int64_t seq_len, uint64_t seed);

  int64_t seq_len() const { return seq_len_; }
  int64_t num_samples() const { return order_.num_samples(); }
  const SampleOrder& order() const { return order_; }

  // Sample `sample`'s inputs and targets, seq_len ids each.
  void fill_sample(int64_t sample, int32_t* inputs, int32_t* targets) const;
  // Rows for global indices [first, first + count): inputs and targets are [count, seq_len].
  void fill(int64_t first_global_index, int64_t count, int32_t* inputs, int32_t* targets) const;
  void fill(IndexRange range, int32_t* inputs, int32_t* targets) const {
    fill(range.begin, range.size(), inputs, targets);
  }

 private:
  const TokenStream* stream_;
  int64_t seq_len_;
  SampleOrder order_;
};

// S = (T − 1) / seq_len: the number of complete samples in a stream of T tokens.
int64_t count_samples(int64_t stream_tokens, int64_t seq_len);

}  // namespace dape::data
