/*
 * TokenStream: one split of a dataset seen as a single sequence of int32 token ids with random
 * access. Its pieces are either token shards (a dape dataset's split, in manifest order) or
 * token ranges of a Megatron .bin (the documents of a Megatron split, megatron_dataset.h).
 *
 * Everything stays memory-mapped; a read copies (and range-checks against the vocabulary) only
 * the window asked for, finding the first piece by binary search over the pieces' start offsets
 * and continuing across piece boundaries. Reads never change the stream, so any number of
 * threads may read one stream at once.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/data/megatron_dataset.h"
#include "core/data/token_shard.h"

namespace dape::data {

class TokenStream {
 public:
  TokenStream() = default;
  // `name` says which stream this is in messages ("split 'train' of dataset 'DIR'").
  // Every shard must have the vocabulary `vocab_size`.
  TokenStream(std::string name, int32_t vocab_size, std::vector<TokenShardReader> shards);
  // Tokens [begin, begin + count) of `data`'s .bin, for each range in order; ids are checked
  // against `vocab_size` on every read.
  struct TokenRange {
    int64_t begin = 0, count = 0;
  };
  TokenStream(std::string name, int32_t vocab_size, std::shared_ptr<const MegatronDataset> data,
              const std::vector<TokenRange>& ranges);
  TokenStream(TokenStream&&) noexcept = default;
  TokenStream& operator=(TokenStream&&) noexcept = default;

  int64_t size() const { return starts_.empty() ? 0 : starts_.back(); }
  int32_t vocab_size() const { return vocab_size_; }
  const std::string& name() const { return name_; }
  // Token shards (none for Megatron data).
  size_t num_shards() const { return shards_.size(); }
  const TokenShardReader& shard(size_t i) const { return shards_.at(i); }

  // Copies tokens [offset, offset + count) into `out`. Throws dape::Error when the window runs
  // outside [0, size()), or (from the shard) when an id is outside the vocabulary.
  void read(int64_t offset, int64_t count, int32_t* out) const;

 private:
  std::string name_;
  int32_t vocab_size_ = 0;
  std::vector<TokenShardReader> shards_;
  std::shared_ptr<const MegatronDataset> megatron_;
  std::vector<TokenRange> ranges_;
  // starts_[i] = first token of piece i (shard or range); starts_[pieces] = size().
  std::vector<int64_t> starts_;
};

}  // namespace dape::data
