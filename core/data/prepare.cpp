#include "core/data/prepare.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <regex>

#include "common/check.h"
#include "common/file_util.h"
#include "common/progress.h"
#include "core/data/dataset_manifest.h"
#include "core/data/document_source.h"
#include "core/data/split_writer.h"
#include "core/data/tokenizer.h"
#include "core/data/train_val_split.h"

namespace dape::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTrainPrefix = "train";
constexpr const char* kValidationPrefix = "val";

// Files `prepare` itself writes: shards, their temporaries, the manifest's temporary, and a
// tokenizer's model file (and its temporary).
bool is_prepare_output(const std::string& name) {
  static const std::regex pattern(
      R"((train|val)_\d{5,}\.tok(\.tmp)?|(dataset\.pbtxt|tokenizer\.model)(\.tmp\.\d+)?)");
  return std::regex_match(name, pattern);
}

// Makes `dir` ready to receive a dataset: creates it, or accepts it empty, or clears an earlier
// dataset's files (manifest first, so the directory never looks like a complete dataset while
// its shards are being replaced). Refuses anything else.
void prepare_output_directory(const std::string& dir) {
  if (!path_exists(dir)) {
    make_directories(dir);
    return;
  }
  if (!is_directory(dir)) fail("output '{}' exists and is not a directory", dir);
  std::vector<std::string> ours, foreign;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    (is_prepare_output(name) ? ours : foreign).push_back(name);
  }
  if (ec) fail("cannot list output directory '{}': {}", dir, ec.message());
  const bool is_dataset = path_exists(manifest_path(dir));
  if (!foreign.empty() && !is_dataset) {
    std::sort(foreign.begin(), foreign.end());
    fail(
        "output directory '{}' is not empty and is not a dataset (it holds '{}'{}); refusing to "
        "write into it: choose a new or empty directory",
        dir, foreign.front(),
        foreign.size() > 1 ? fmt::format(" and {} other entries", foreign.size() - 1) : "");
  }
  // An earlier dataset, or the leftovers of an interrupted prepare: replace our own files only.
  if (is_dataset && !fs::remove(manifest_path(dir), ec) && ec) {
    fail("cannot remove the earlier manifest '{}': {}", manifest_path(dir), ec.message());
  }
  for (const auto& name : ours) {
    if (!fs::remove(join_path(dir, name), ec) && ec) {
      fail("cannot remove '{}' from the output directory: {}", join_path(dir, name), ec.message());
    }
  }
  fsync_path(dir);
}

// Whether `inner` is `outer` or lies below it (paths resolved, the last parts may not exist yet).
bool is_within(const std::string& inner, const std::string& outer) {
  std::error_code ec;
  const fs::path a = fs::weakly_canonical(inner, ec), b = fs::weakly_canonical(outer, ec);
  if (ec) return false;
  auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  return ib == b.end() || (std::next(ib) == b.end() && ib->empty());
}

double entropy_nats(const std::vector<int64_t>& counts) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  if (total == 0) return 0;
  double h = 0;
  for (int64_t c : counts) {
    if (c == 0) continue;
    const double p = static_cast<double>(c) / static_cast<double>(total);
    h -= p * std::log(p);
  }
  return h;
}

}  // namespace

PrepareSummary prepare_dataset(const PrepareOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.inputs.empty()) fail("prepare: no --input given");
  if (options.out_dir.empty()) fail("prepare: no --out directory given");
  if (options.shard_tokens <= 0) {
    fail("prepare: shard_tokens must be > 0, got {}", options.shard_tokens);
  }
  for (const auto& in : options.inputs) {
    if (is_directory(in) && is_within(options.out_dir, in)) {
      fail(
          "prepare: output directory '{}' lies inside input directory '{}', whose files would "
          "be read as documents; choose an output outside the inputs",
          options.out_dir, in);
    }
  }
  // The tokenizer: made now, or (train-sp) trained on a first pass over the documents.
  const bool train_first = tokenizer_needs_training(options.tokenizer);
  std::unique_ptr<TextTokenizer> tokenizer;
  if (!train_first) tokenizer = make_tokenizer(options.tokenizer);
  ReaderOptions reader_options = options.reader;
  reader_options.show_progress = options.show_progress;
  std::unique_ptr<DocumentSource> documents =
      open_documents(options.inputs, options.format, reader_options);
  const int64_t num_documents = documents->document_count();
  if (num_documents == 0) {
    fail("prepare: the inputs hold no documents (no files found, or only empty files)");
  }
  const TrainValSplit rule(num_documents, options.val_fraction);
  if (train_first) {
    tokenizer = train_tokenizer(options.tokenizer, *documents, {options.sp_train_bytes});
    documents = open_documents(options.inputs, options.format, reader_options);
  }
  prepare_output_directory(options.out_dir);
  tokenizer->save_files(options.out_dir);

  const int32_t vocab = tokenizer->vocab_size();
  const int32_t eod = tokenizer->eod_id();
  SplitWriter train(options.out_dir, kTrainPrefix, vocab, eod, options.shard_tokens);
  SplitWriter validation(options.out_dir, kValidationPrefix, vocab, eod, options.shard_tokens);
  std::vector<int64_t> train_counts(static_cast<size_t>(vocab), 0);
  auto to_train = [&](std::span<const int32_t> t) {
    for (int32_t id : t) ++train_counts[static_cast<size_t>(id)];
    train.append(t);
    train.count_document();
  };
  auto to_validation = [&](std::span<const int32_t> t) {
    validation.append(t);
    validation.count_document();
  };

  std::unique_ptr<ProgressBar> bar;
  if (options.show_progress)
    bar = std::make_unique<ProgressBar>("prepare", documents->total_bytes(), "B");
  PrepareSummary summary;
  summary.out_dir = options.out_dir;
  summary.inputs = documents->describe();
  summary.documents = num_documents;
  summary.input_bytes = documents->total_bytes();
  summary.split_by_document = rule.by_document();
  summary.tokenizer = tokenizer->summary();

  std::vector<int32_t> tokens;
  Document doc;
  int64_t k = 0, bytes_done = 0;
  while (documents->next(doc)) {
    DAPE_CHECK(doc.record == k, "record {} came when {} was expected", doc.record, k);
    ++k;
    bytes_done += doc.input_bytes;
    if (doc.skipped) {
      BadRecordTally& tally = summary.bad_records[doc.reason];
      if (tally.count++ == 0) tally.first = doc.problem;
      ++summary.skipped_records;
      continue;
    }
    tokens.clear();
    tokenizer->encode(doc.text, tokens);
    tokens.push_back(eod);
    const std::span<const int32_t> all(tokens);
    if (rule.by_document()) {
      if (rule.is_validation_document(doc.record)) {
        to_validation(all);
      } else {
        to_train(all);
      }
    } else {
      const auto n = static_cast<int64_t>(tokens.size());
      const int64_t tail = rule.validation_tail(n);
      if (tail < n) {
        if (tail > 0) tokens.insert(tokens.begin() + (n - tail), eod);  // close the train part
        to_train(
            std::span<const int32_t>(tokens).first(static_cast<size_t>(n - tail + (tail > 0))));
      }
      if (tail > 0) to_validation(std::span<const int32_t>(tokens).last(static_cast<size_t>(tail)));
    }
    if (bar) {
      bar->update(bytes_done, fmt::format("{}/{} docs | {} tok", k, num_documents,
                                          si_format(train.tokens() + validation.tokens())));
    }
  }
  DAPE_CHECK(k == num_documents, "read {} documents, expected {}", k, num_documents);
  if (train.tokens() == 0) {
    fail(
        "prepare: the training split would be empty ({} documents{}, validation fraction {}); "
        "lower --val-fraction or add input",
        num_documents,
        summary.skipped_records ? fmt::format(", {} of them skipped", summary.skipped_records)
                                : std::string(),
        options.val_fraction);
  }

  Dataset manifest;
  manifest.set_version(kDatasetVersion);
  tokenizer->describe(*manifest.mutable_tokenizer());
  manifest.set_vocab_size(vocab);
  *manifest.mutable_train() = train.finish();
  *manifest.mutable_validation() = validation.finish();
  for (const auto& in : options.inputs) manifest.add_sources(in);
  manifest.set_val_fraction(options.val_fraction);
  summary.train_entropy_nats = entropy_nats(train_counts);
  summary.train_entropy_bits = summary.train_entropy_nats / std::log(2.0);
  manifest.set_train_unigram_entropy(summary.train_entropy_nats);
  write_file_atomic(manifest_path(options.out_dir), manifest_to_text(manifest));

  summary.train_documents = manifest.train().documents();
  summary.validation_documents = manifest.validation().documents();
  summary.train_tokens = manifest.train().tokens();
  summary.validation_tokens = manifest.validation().tokens();
  summary.train_shards = manifest.train().shards_size();
  summary.validation_shards = manifest.validation().shards_size();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  summary.tokens_per_second =
      summary.seconds > 0 ? (summary.train_tokens + summary.validation_tokens) / summary.seconds
                          : 0;
  if (bar) {
    bar->finish(fmt::format("{} docs | {} tok", num_documents,
                            si_format(summary.train_tokens + summary.validation_tokens)));
  }
  return summary;
}

std::string format_prepare_summary(const PrepareSummary& s) {
  std::string out = fmt::format("prepared {}: {} documents, {} input bytes\n", s.out_dir,
                                s.documents, s.input_bytes);
  out += fmt::format("  tokenizer   : {}\n", s.tokenizer);
  if (!s.inputs.empty()) out += fmt::format("  inputs      : {}\n", s.inputs);
  if (s.skipped_records > 0) {
    out += fmt::format("  skipped     : {} bad record{} (--on-bad-record skip)\n",
                       s.skipped_records, s.skipped_records == 1 ? "" : "s");
    for (const auto& [reason, tally] : s.bad_records) {
      out += fmt::format("    {:<24}: {}, first: {}\n", reason, tally.count, tally.first);
    }
  }
  out += fmt::format("  split       : {}\n",
                     s.split_by_document ? "by document" : "by tokens (tail of each document)");
  out += fmt::format("  train       : {} tokens, {} documents, {} shards\n", s.train_tokens,
                     s.train_documents, s.train_shards);
  out += fmt::format("  validation  : {} tokens, {} documents, {} shards\n", s.validation_tokens,
                     s.validation_documents, s.validation_shards);
  out += fmt::format("  speed       : {} tokens/s ({:.2f} s)\n", si_format(s.tokens_per_second),
                     s.seconds);
  out += fmt::format("  train unigram entropy: {:.4f} nats = {:.4f} bits per token\n",
                     s.train_entropy_nats, s.train_entropy_bits);
  return out;
}

}  // namespace dape::data
