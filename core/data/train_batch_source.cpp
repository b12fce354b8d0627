#include "core/data/train_batch_source.h"

#include <cstring>

#include "common/check.h"

namespace dape::data {

int64_t count_samples(int64_t stream_tokens, int64_t seq_len) {
  if (seq_len < 1) fail("sequence length {} must be >= 1", seq_len);
  return stream_tokens < 1 ? 0 : (stream_tokens - 1) / seq_len;
}

namespace {

SampleOrder make_order(const TokenStream& stream, int64_t seq_len, uint64_t seed) {
  const int64_t samples = count_samples(stream.size(), seq_len);
  if (samples < 1) {
    fail("{} holds {} tokens, fewer than one training sample of seq_len + 1 = {} tokens",
         stream.name(), stream.size(), seq_len + 1);
  }
  return SampleOrder(seed, samples);
}

}  // namespace

TrainBatchSource::TrainBatchSource(const TokenStream& stream, int64_t seq_len, uint64_t seed)
    : stream_(&stream), seq_len_(seq_len), order_(make_order(stream, seq_len, seed)) {}

void TrainBatchSource::fill_sample(int64_t sample, int32_t* inputs, int32_t* targets) const {
  DAPE_CHECK(sample >= 0 && sample < num_samples(), "sample {} outside [0, {})", sample,
             num_samples());
  const int64_t begin = sample * seq_len_;
  stream_->read(begin, seq_len_, inputs);
  std::memcpy(targets, inputs + 1, static_cast<size_t>(seq_len_ - 1) * sizeof(int32_t));
  stream_->read(begin + seq_len_, 1, targets + seq_len_ - 1);
}

void TrainBatchSource::fill(int64_t first_global_index, int64_t count, int32_t* inputs,
                            int32_t* targets) const {
  DAPE_CHECK(count >= 0, "negative row count {}", count);
  for (int64_t i = 0; i < count; ++i) {
    fill_sample(order_.sample_at(first_global_index + i), inputs + i * seq_len_,
                targets + i * seq_len_);
  }
}

}  // namespace dape::data
