/*
 * SplitWriter: writes one split of a dataset as a numbered series of token shards
 * (<prefix>_00000.tok, <prefix>_00001.tok, …) of at most `shard_tokens` tokens each, and records
 * them (file, tokens, checksum, documents) in the split's manifest entry.
 *
 * A document may straddle two shards: shards are cut by token count only, since a TokenStream
 * reads across shard boundaries anyway. A shard's `documents` counts the end-of-document tokens
 * it holds. No shard file is created for a split that receives no tokens.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/data/dataset.pb.h"
#include "core/data/token_shard.h"

namespace dape::data {

class SplitWriter {
 public:
  SplitWriter(std::string dir, std::string prefix, int32_t vocab_size, int32_t eod_id,
              int64_t shard_tokens);

  void append(std::span<const int32_t> tokens);
  // Counts one document (or document part) in the split's total.
  void count_document() { split_.set_documents(split_.documents() + 1); }
  // Finishes the open shard; returns the manifest entry.
  const Split& finish();

  int64_t tokens() const { return split_.tokens(); }
  const Split& split() const { return split_; }

  // "<prefix>_<index, 5 digits>.tok"
  static std::string shard_name(const std::string& prefix, int64_t index);

 private:
  void close_shard();

  std::string dir_, prefix_;
  int32_t vocab_size_, eod_id_;
  int64_t shard_tokens_;
  std::unique_ptr<TokenShardWriter> shard_;
  int64_t shard_documents_ = 0;
  Split split_;
};

}  // namespace dape::data
