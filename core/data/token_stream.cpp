#include "core/data/token_stream.h"

#include <algorithm>

#include "common/check.h"

namespace dape::data {

TokenStream::TokenStream(std::string name, int32_t vocab_size, std::vector<TokenShardReader> shards)
    : name_(std::move(name)), vocab_size_(vocab_size), shards_(std::move(shards)) {
  starts_.reserve(shards_.size() + 1);
  starts_.push_back(0);
  for (const auto& s : shards_) {
    DAPE_CHECK(s.vocab_size() == vocab_size_, "shard '{}' has vocabulary {}, stream {} has {}",
               s.path(), s.vocab_size(), name_, vocab_size_);
    starts_.push_back(starts_.back() + s.size());
  }
}

TokenStream::TokenStream(std::string name, int32_t vocab_size,
                         std::shared_ptr<const MegatronDataset> data,
                         const std::vector<TokenRange>& ranges)
    : name_(std::move(name)), vocab_size_(vocab_size), megatron_(std::move(data)) {
  starts_.push_back(0);
  for (const TokenRange& r : ranges) {
    DAPE_CHECK(r.begin >= 0 && r.count >= 0 && r.begin + r.count <= megatron_->tokens(),
               "range [{}, +{}) outside the {} tokens of '{}'", r.begin, r.count,
               megatron_->tokens(), megatron_->paths().bin);
    if (r.count == 0) continue;
    if (!ranges_.empty() && ranges_.back().begin + ranges_.back().count == r.begin) {
      ranges_.back().count += r.count;  // adjacent: one piece
      starts_.back() += r.count;
      continue;
    }
    ranges_.push_back(r);
    starts_.push_back(starts_.back() + r.count);
  }
}

void TokenStream::read(int64_t offset, int64_t count, int32_t* out) const {
  if (offset < 0 || count < 0 || offset > size() || count > size() - offset) {
    fail("{}: read of {} tokens at offset {} runs outside the stream's {} tokens", name_, count,
         offset, size());
  }
  if (count == 0) return;
  // The shard holding `offset`: the last one that starts at or before it (empty shards, whose
  // start equals the next one's, are passed over by upper_bound).
  size_t i = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), offset) -
                                 starts_.begin()) -
             1;
  while (count > 0) {
    const int64_t local = offset - starts_[i];
    const int64_t n = std::min(count, starts_[i + 1] - offset);
    if (megatron_) {
      megatron_->read(ranges_[i].begin + local, n, out, vocab_size_);
    } else {
      shards_[i].read(local, n, out);
    }
    out += n;
    offset += n;
    count -= n;
    ++i;
  }
}

}  // namespace dape::data
