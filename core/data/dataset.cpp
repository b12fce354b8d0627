#include "core/data/dataset.h"

#include <memory>

#include "common/check.h"
#include "common/file_util.h"
#include "common/progress.h"
#include "core/data/dataset_manifest.h"

namespace dape::data {

namespace {

// Below this many payload bytes, verification takes well under a second: no progress bar.
constexpr int64_t kProgressMinBytes = int64_t{64} << 20;

TokenShardReader open_listed_shard(const std::string& dir, const Dataset& m, const Shard& s,
                                   const char* split) {
  const std::string path = join_path(dir, s.file());
  if (!path_exists(path)) {
    fail("dataset '{}': shard '{}' of the {} split, listed in {}, does not exist", dir, s.file(),
         split, kManifestFileName);
  }
  TokenShardReader r(path);
  if (r.size() != s.tokens()) {
    fail("dataset '{}': shard '{}' holds {} tokens by its header but {} lists {}", dir, s.file(),
         r.size(), kManifestFileName, s.tokens());
  }
  if (r.stored_checksum() != s.xxh64()) {
    fail("dataset '{}': shard '{}' has checksum {} in its header but {} lists {}", dir, s.file(),
         hex64(r.stored_checksum()), kManifestFileName, hex64(s.xxh64()));
  }
  if (r.vocab_size() != m.vocab_size()) {
    fail("dataset '{}': shard '{}' has vocabulary size {} but {} says {}", dir, s.file(),
         r.vocab_size(), kManifestFileName, m.vocab_size());
  }
  return r;
}

std::vector<TokenShardReader> open_split(const std::string& dir, const Dataset& m,
                                         const Split& split, const char* name) {
  std::vector<TokenShardReader> shards;
  shards.reserve(static_cast<size_t>(split.shards_size()));
  for (const Shard& s : split.shards()) shards.push_back(open_listed_shard(dir, m, s, name));
  return shards;
}

void verify_all(const std::vector<const TokenStream*>& streams, bool show_progress) {
  int64_t total = 0;
  for (const auto* st : streams)
    for (size_t i = 0; i < st->num_shards(); ++i)
      total += static_cast<int64_t>(st->shard(i).payload_bytes());
  std::unique_ptr<ProgressBar> bar;
  if (show_progress && total >= kProgressMinBytes)
    bar = std::make_unique<ProgressBar>("verify", total, "B");
  int64_t before = 0;
  for (const auto* st : streams) {
    for (size_t i = 0; i < st->num_shards(); ++i) {
      const auto& shard = st->shard(i);
      shard.verify_checksum([&](int64_t done) {
        if (bar) bar->update(before + done);
      });
      before += static_cast<int64_t>(shard.payload_bytes());
    }
  }
  if (bar) bar->finish();
}

}  // namespace

TokenDataset::TokenDataset(const std::string& dir, const DatasetOpenOptions& options)
    : dir_(dir), manifest_(load_manifest(dir)) {
  validate_manifest(manifest_, manifest_path(dir));
  const int32_t vocab = manifest_.vocab_size();
  train_ = TokenStream(fmt::format("split 'train' of dataset '{}'", dir), vocab,
                       open_split(dir, manifest_, manifest_.train(), "train"));
  validation_ = TokenStream(fmt::format("split 'validation' of dataset '{}'", dir), vocab,
                            open_split(dir, manifest_, manifest_.validation(), "validation"));
  if (options.verify_checksums) verify_all({&train_, &validation_}, options.show_progress);
}

}  // namespace dape::data
