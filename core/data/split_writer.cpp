#include "core/data/split_writer.h"

#include <algorithm>

#include "common/check.h"
#include "common/file_util.h"

namespace dape::data {

SplitWriter::SplitWriter(std::string dir, std::string prefix, int32_t vocab_size, int32_t eod_id,
                         int64_t shard_tokens)
    : dir_(std::move(dir)),
      prefix_(std::move(prefix)),
      vocab_size_(vocab_size),
      eod_id_(eod_id),
      shard_tokens_(shard_tokens) {
  DAPE_CHECK(shard_tokens > 0, "shard_tokens {} must be > 0", shard_tokens);
  split_.set_tokens(0);
  split_.set_documents(0);
}

std::string SplitWriter::shard_name(const std::string& prefix, int64_t index) {
  return fmt::format("{}_{:05d}.tok", prefix, index);
}

void SplitWriter::append(std::span<const int32_t> tokens) {
  while (!tokens.empty()) {
    if (!shard_) {
      const std::string name = shard_name(prefix_, split_.shards_size());
      shard_ = std::make_unique<TokenShardWriter>(join_path(dir_, name), vocab_size_);
      shard_documents_ = 0;
    }
    const auto room = static_cast<size_t>(shard_tokens_ - shard_->tokens_written());
    const auto part = tokens.first(std::min(room, tokens.size()));
    shard_->append(part);
    shard_documents_ += std::count(part.begin(), part.end(), eod_id_);
    split_.set_tokens(split_.tokens() + static_cast<int64_t>(part.size()));
    tokens = tokens.subspan(part.size());
    if (shard_->tokens_written() == shard_tokens_) close_shard();
  }
}

void SplitWriter::close_shard() {
  shard_->finish();
  Shard* s = split_.add_shards();
  s->set_file(shard_name(prefix_, split_.shards_size() - 1));
  s->set_tokens(shard_->tokens_written());
  s->set_xxh64(shard_->checksum());
  s->set_documents(shard_documents_);
  shard_.reset();
}

const Split& SplitWriter::finish() {
  if (shard_) close_shard();
  return split_;
}

}  // namespace dape::data
