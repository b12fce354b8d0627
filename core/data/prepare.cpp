#include "core/data/prepare.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
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
      R"((train|val)(_r\d{3,})?_\d{5,}\.tok(\.tmp)?|(dataset\.pbtxt|tokenizer\.model)(\.tmp\.\d+)?)");
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

// What one rank tokenized, for rank 0's manifest: its shard entries, the bad records it passed
// over, and how long it took over how many input bytes.
struct RankPart {
  Split train, validation;
  std::map<std::string, BadRecordTally> bad_records;
  int64_t bytes = 0;
  double seconds = 0;
};

void append_sized(std::string& out, const std::string& bytes) {
  const uint64_t n = bytes.size();
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
  out += bytes;
}

std::string read_sized(const std::string& in, size_t& at) {
  uint64_t n = 0;
  DAPE_CHECK(at + sizeof n <= in.size(), "rank part truncated at byte {} of {}", at, in.size());
  std::memcpy(&n, in.data() + at, sizeof n);
  at += sizeof n;
  DAPE_CHECK(n <= in.size() - at, "rank part field of {} bytes at byte {} of {}", n, at, in.size());
  std::string out = in.substr(at, n);
  at += n;
  return out;
}

std::string encode_rank_part(const RankPart& part) {
  std::string out;
  append_sized(out, part.train.SerializeAsString());
  append_sized(out, part.validation.SerializeAsString());
  append_sized(out, fmt::format("{} {:a} {}", part.bytes, part.seconds, part.bad_records.size()));
  for (const auto& [reason, tally] : part.bad_records) {
    append_sized(out, reason);
    append_sized(out, std::to_string(tally.count));
    append_sized(out, tally.first);
  }
  return out;
}

RankPart decode_rank_part(const std::string& in) {
  RankPart part;
  size_t at = 0;
  DAPE_CHECK(part.train.ParseFromString(read_sized(in, at)), "unreadable train split entry");
  DAPE_CHECK(part.validation.ParseFromString(read_sized(in, at)), "unreadable validation entry");
  const std::string counts = read_sized(in, at);
  size_t reasons = 0;
  char* end = nullptr;
  part.bytes = std::strtoll(counts.c_str(), &end, 10);
  part.seconds = std::strtod(end, &end);
  reasons = std::strtoull(end, &end, 10);
  for (size_t i = 0; i < reasons; ++i) {
    const std::string reason = read_sized(in, at);
    BadRecordTally& tally = part.bad_records[reason];
    tally.count = std::stoll(read_sized(in, at));
    tally.first = read_sized(in, at);
  }
  DAPE_CHECK(at == in.size(), "rank part has {} bytes left over", in.size() - at);
  return part;
}

// Appends `part`'s shards to `all`, summing the counts.
void append_split(Split& all, const Split& part) {
  for (const Shard& shard : part.shards()) *all.add_shards() = shard;
  all.set_tokens(all.tokens() + part.tokens());
  all.set_documents(all.documents() + part.documents());
}

// Every rank's tokenizer, made the same as rank 0's: rank 0 has `mine` (and has saved its files
// in `dir`); the others have their own (byte, sp:MODEL), which must describe itself exactly as
// rank 0's does, or none yet (train-sp), and then load the one rank 0 saved.
std::unique_ptr<TextTokenizer> share_tokenizer(std::unique_ptr<TextTokenizer> mine,
                                               const std::string& dir, Communicator& comm) {
  if (comm.size() == 1) return mine;
  Dataset described;
  if (comm.rank() == 0) {
    mine->describe(*described.mutable_tokenizer());
    described.set_vocab_size(mine->vocab_size());
  }
  const std::string root_bytes = comm.broadcast_bytes(described.SerializeAsString(), 0);
  if (comm.rank() == 0) return mine;
  DAPE_CHECK(described.ParseFromString(root_bytes), "unreadable tokenizer from rank 0");
  if (mine) {
    Dataset own;
    mine->describe(*own.mutable_tokenizer());
    own.set_vocab_size(mine->vocab_size());
    if (own.SerializeAsString() != root_bytes) {
      fail(
          "prepare: rank {}'s tokenizer ({}) is not rank 0's ({}); every rank must read the same "
          "model file",
          comm.rank(), describe_manifest_tokenizer(own), describe_manifest_tokenizer(described));
    }
    return mine;
  }
  try {
    auto shared = tokenizer_from_manifest(described, dir);
    DAPE_CHECK(shared != nullptr, "rank 0's tokenizer cannot run here");
    return shared;
  } catch (const Error& e) {
    fail(
        "prepare: rank {} cannot load the tokenizer rank 0 trained and saved in '{}' ({}): with "
        "several ranks the output directory must be on a file system they all share",
        comm.rank(), dir, e.what());
  }
}
}  // namespace

PrepareSummary prepare_dataset(const PrepareOptions& options) {
  LocalCommunicator one;
  return prepare_dataset(options, one);
}

PrepareSummary prepare_dataset(const PrepareOptions& options, Communicator& comm) {
  const auto start = std::chrono::steady_clock::now();
  const int rank = comm.rank(), ranks = comm.size();
  const bool root = rank == 0;
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
  // The tokenizer: made now, or (train-sp) trained by rank 0 on a first pass over the documents.
  const bool train_first = tokenizer_needs_training(options.tokenizer);
  std::unique_ptr<TextTokenizer> tokenizer;
  if (!train_first) tokenizer = make_tokenizer(options.tokenizer);
  ReaderOptions reader_options = options.reader;
  reader_options.show_progress = options.show_progress && root;
  std::unique_ptr<DocumentSource> documents =
      open_documents(options.inputs, options.format, reader_options);
  const int64_t num_documents = documents->document_count();
  if (num_documents == 0) {
    fail("prepare: the inputs hold no documents (no files found, or only empty files)");
  }
  const TrainValSplit rule(num_documents, options.val_fraction);
  if (root) {
    if (train_first) {
      tokenizer = train_tokenizer(options.tokenizer, *documents, {options.sp_train_bytes});
      documents = open_documents(options.inputs, options.format, reader_options);
    }
    prepare_output_directory(options.out_dir);
    tokenizer->save_files(options.out_dir);
  }
  tokenizer = share_tokenizer(std::move(tokenizer), options.out_dir, comm);

  const int32_t vocab = tokenizer->vocab_size();
  const int32_t eod = tokenizer->eod_id();
  const std::string suffix = ranks > 1 ? fmt::format("_r{:03}", rank) : "";
  SplitWriter train(options.out_dir, kTrainPrefix + suffix, vocab, eod, options.shard_tokens);
  SplitWriter validation(options.out_dir, kValidationPrefix + suffix, vocab, eod,
                         options.shard_tokens);
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

  // This rank's records: a contiguous range, so the ranks' shards in rank order hold the stream
  // one process would write.
  const int64_t first = num_documents * rank / ranks;
  const int64_t last = num_documents * (rank + 1) / ranks;
  if (first > 0) documents->skip(first);
  std::unique_ptr<ProgressBar> bar;
  if (options.show_progress && root) {
    // With several ranks the bar follows rank 0's share, whose size in bytes is known only
    // approximately (its share of the records, at the average record size).
    const int64_t total = documents->total_bytes();
    bar = ranks == 1 ? std::make_unique<ProgressBar>("prepare", total, "B")
                     : std::make_unique<ProgressBar>(
                           fmt::format("prepare (rank 0 of {})", ranks),
                           static_cast<int64_t>(static_cast<double>(total) *
                                                static_cast<double>(last - first) /
                                                static_cast<double>(num_documents)),
                           "B");
  }
  PrepareSummary summary;
  summary.out_dir = options.out_dir;
  summary.inputs = documents->describe();
  summary.documents = num_documents;
  summary.input_bytes = documents->total_bytes();
  summary.split_by_document = rule.by_document();
  summary.tokenizer = tokenizer->summary();
  summary.ranks = ranks;

  const auto work_start = std::chrono::steady_clock::now();
  std::vector<int32_t> tokens;
  Document doc;
  int64_t k = first, bytes_done = 0;
  while (k < last && documents->next(doc)) {
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
      bar->update(bytes_done, fmt::format("{}/{} docs | {} tok", k - first, last - first,
                                          si_format(train.tokens() + validation.tokens())));
    }
  }
  DAPE_CHECK(k == last, "rank {} read records up to {}, expected up to {}", rank, k, last);
  RankPart mine;
  mine.train = train.finish();
  mine.validation = validation.finish();
  mine.bad_records = std::move(summary.bad_records);
  mine.bytes = bytes_done;
  mine.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - work_start).count();

  // Every rank learns every part (so all agree on the outcome, errors included); rank 0 writes.
  comm.all_reduce_sum(train_counts.data(), static_cast<int64_t>(train_counts.size()));
  const std::vector<std::string> parts = comm.all_gather_bytes(encode_rank_part(mine));
  Split train_split, validation_split;
  summary.bad_records.clear();
  summary.skipped_records = 0;
  for (int r = 0; r < ranks; ++r) {
    const RankPart part = decode_rank_part(parts[static_cast<size_t>(r)]);
    append_split(train_split, part.train);
    append_split(validation_split, part.validation);
    for (const auto& [reason, tally] : part.bad_records) {  // rank order = record order
      BadRecordTally& all = summary.bad_records[reason];
      if (all.count == 0) all.first = tally.first;
      all.count += tally.count;
      summary.skipped_records += tally.count;
    }
    if (part.seconds >= summary.slowest_rank_seconds) {
      summary.slowest_rank_seconds = part.seconds;
      summary.slowest_rank_bytes = part.bytes;
    }
  }
  if (train_split.tokens() == 0) {
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
  *manifest.mutable_train() = train_split;
  *manifest.mutable_validation() = validation_split;
  for (const auto& in : options.inputs) manifest.add_sources(in);
  manifest.set_val_fraction(options.val_fraction);
  summary.train_entropy_nats = entropy_nats(train_counts);
  summary.train_entropy_bits = summary.train_entropy_nats / std::log(2.0);
  manifest.set_train_unigram_entropy(summary.train_entropy_nats);
  if (root) {
    for (const Split* split : {&train_split, &validation_split}) {
      for (const Shard& shard : split->shards()) {
        if (!path_exists(join_path(options.out_dir, shard.file()))) {
          fail(
              "prepare: rank 0 cannot see shard '{}' that another rank wrote in '{}': with "
              "several ranks the output directory must be on a file system they all share",
              shard.file(), options.out_dir);
        }
      }
    }
    write_file_atomic(manifest_path(options.out_dir), manifest_to_text(manifest));
  }
  comm.barrier();  // every rank returns with the manifest in place

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
    bar->finish(fmt::format("{} docs | {} tok", last - first,
                            si_format(train.tokens() + validation.tokens())));
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
  out += fmt::format(
      "  ranks       : {} (slowest tokenized {} input bytes in {:.2f} s: {:.1f} MB/s)\n", s.ranks,
      s.slowest_rank_bytes, s.slowest_rank_seconds,
      s.slowest_rank_seconds > 0 ? s.slowest_rank_bytes / s.slowest_rank_seconds / 1e6 : 0.0);
  out += fmt::format("  train unigram entropy: {:.4f} nats = {:.4f} bits per token\n",
                     s.train_entropy_nats, s.train_entropy_bits);
  return out;
}

}  // namespace dape::data
