#include "core/data/dataset.h"

#include <memory>

#include "common/check.h"
#include "common/file_util.h"
#include "common/progress.h"
#include "core/data/dataset_manifest.h"
#include "core/data/train_val_split.h"

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

// Megatron data has no checksums: reading every token checks its id against the vocabulary.
void scan_all_ids(const std::vector<const TokenStream*>& streams, bool show_progress) {
  constexpr int64_t kWindow = int64_t{1} << 20;
  int64_t total = 0;
  for (const auto* st : streams) total += st->size();
  std::unique_ptr<ProgressBar> bar;
  if (show_progress && total * 2 >= kProgressMinBytes)
    bar = std::make_unique<ProgressBar>("verify ids", total, "tok");
  std::vector<int32_t> window(static_cast<size_t>(kWindow));
  int64_t before = 0;
  for (const auto* st : streams) {
    for (int64_t at = 0; at < st->size(); at += kWindow) {
      st->read(at, std::min(kWindow, st->size() - at), window.data());
      if (bar) bar->update(before + at);
    }
    before += st->size();
  }
  if (bar) bar->finish();
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

TokenDataset::TokenDataset(const std::string& dir, const DatasetOpenOptions& options) : dir_(dir) {
  if (!is_directory(dir)) {
    if (auto megatron = find_megatron_dataset(dir)) {
      open_megatron(*megatron, options);
      return;
    }
  }
  if (!options.validation_path.empty()) {
    fail(
        "a validation path ('{}') applies to Megatron data only; the dataset '{}' written by "
        "`dape prepare` has its own validation split",
        options.validation_path, dir);
  }
  manifest_ = load_manifest(dir);
  validate_manifest(manifest_, manifest_path(dir));
  const int32_t vocab = manifest_.vocab_size();
  train_ = TokenStream(fmt::format("split 'train' of dataset '{}'", dir), vocab,
                       open_split(dir, manifest_, manifest_.train(), "train"));
  validation_ = TokenStream(fmt::format("split 'validation' of dataset '{}'", dir), vocab,
                            open_split(dir, manifest_, manifest_.validation(), "validation"));
  if (options.verify_checksums) verify_all({&train_, &validation_}, options.show_progress);
}

void TokenDataset::open_megatron(const MegatronPaths& paths, const DatasetOpenOptions& options) {
  is_megatron_ = true;
  if (options.vocab_size <= 0) {
    fail(
        "'{}' is Megatron data, whose files do not record the vocabulary size: set "
        "model.vocab_size to the tokenizer's vocabulary (e.g. 50257 for GPT-2 BPE; `dape "
        "inspect {}` shows the largest id in the data)",
        dir_, paths.idx);
  }
  const int32_t vocab = options.vocab_size;
  auto train_data = std::make_shared<const MegatronDataset>(paths.idx);
  const int64_t docs = train_data->documents();
  std::vector<TokenStream::TokenRange> train_ranges, val_ranges;
  std::shared_ptr<const MegatronDataset> val_data;
  int64_t train_docs = 0, val_docs = 0;
  if (!options.validation_path.empty()) {
    const auto val_paths = find_megatron_dataset(options.validation_path);
    if (!val_paths) {
      fail("validation path '{}' is not a Megatron dataset (a .idx/.bin file or their prefix)",
           options.validation_path);
    }
    val_data = std::make_shared<const MegatronDataset>(val_paths->idx);
    train_ranges.push_back({0, train_data->tokens()});
    val_ranges.push_back({0, val_data->tokens()});
    train_docs = docs;
    val_docs = val_data->documents();
  } else {
    // ⌈F·D⌉ documents, the k-th being ⌊(2k+1)·D / (2V)⌋ (train_val_split.h).
    const int64_t v = ceil_fraction(options.val_fraction, docs);
    int64_t next_val = 0;  // k of the next validation document
    for (int64_t d = 0; d < docs; ++d) {
      const bool is_val = next_val < v && evenly_spread_index(next_val, docs, v) == d;
      if (is_val) ++next_val;
      const int64_t begin = train_data->document_start(d);
      const int64_t count = train_data->document_start(d + 1) - begin;
      auto& ranges = is_val ? val_ranges : train_ranges;
      // Runs of consecutive documents become one range: memory grows with V, not with D.
      if (!ranges.empty() && ranges.back().begin + ranges.back().count == begin) {
        ranges.back().count += count;
      } else {
        ranges.push_back({begin, count});
      }
      ++(is_val ? val_docs : train_docs);
    }
    DAPE_CHECK(next_val == v, "{} of {} validation documents placed", next_val, v);
    if (train_docs == 0) {
      fail(
          "Megatron data '{}' holds {} document{}; a validation fraction of {} holds out {} of "
          "them, which leaves none to train on: lower data.val_fraction or name a separate "
          "data.validation_path",
          dir_, docs, docs == 1 ? "" : "s", options.val_fraction, v);
    }
    val_data = train_data;
  }
  train_ = TokenStream(fmt::format("the training documents of Megatron data '{}'", paths.prefix),
                       vocab, train_data, train_ranges);
  validation_ = TokenStream(
      fmt::format("the validation documents of Megatron data '{}'", val_data->paths().prefix),
      vocab, val_data, val_ranges);

  manifest_.set_version(kDatasetVersion);
  manifest_.set_vocab_size(vocab);
  manifest_.add_sources(paths.idx);
  if (val_data != train_data) {
    manifest_.add_sources(val_data->paths().idx);
  } else {
    manifest_.set_val_fraction(options.val_fraction);
  }
  manifest_.mutable_train()->set_tokens(train_.size());
  manifest_.mutable_train()->set_documents(train_docs);
  manifest_.mutable_validation()->set_tokens(validation_.size());
  manifest_.mutable_validation()->set_documents(val_docs);
  if (options.verify_checksums) scan_all_ids({&train_, &validation_}, options.show_progress);
}

}  // namespace dape::data
