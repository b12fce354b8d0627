/*
 * TokenStream: one split of a dataset (its shards, in manifest order) seen as a single sequence
 * of int32 token ids with random access.
 *
 * Shards stay memory-mapped; a read copies (and range-checks, see token_shard.h) only the window
 * asked for, finding the first shard by binary search over the shards' start offsets and
 * continuing across shard boundaries. Reads never change the stream, so any number of threads
 * may read one stream at once.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/data/token_shard.h"

namespace dape::data {

class TokenStream {
 public:
  TokenStream() = default;
  // `name` says which stream this is in messages ("split 'train' of dataset 'DIR'").
  // Every shard must have the vocabulary `vocab_size`.
  TokenStream(std::string name, int32_t vocab_size, std::vector<TokenShardReader> shards);
  TokenStream(TokenStream&&) noexcept = default;
  TokenStream& operator=(TokenStream&&) noexcept = default;

  int64_t size() const { return starts_.empty() ? 0 : starts_.back(); }
  int32_t vocab_size() const { return vocab_size_; }
  const std::string& name() const { return name_; }
  size_t num_shards() const { return shards_.size(); }
  const TokenShardReader& shard(size_t i) const { return shards_.at(i); }

  // Copies tokens [offset, offset + count) into `out`. Throws dape::Error when the window runs
  // outside [0, size()), or (from the shard) when an id is outside the vocabulary.
  void read(int64_t offset, int64_t count, int32_t* out) const;

 private:
  std::string name_;
  int32_t vocab_size_ = 0;
  std::vector<TokenShardReader> shards_;
  // starts_[i] = first token of shard i; starts_[num_shards] = size().
  std::vector<int64_t> starts_;
};

}  // namespace dape::data
