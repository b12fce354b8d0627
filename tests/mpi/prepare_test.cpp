// `prepare` on every rank of the job (run under mpirun with 1, 2 and 3 ranks): whatever the number
// of ranks, each split's token stream equals the one a single process writes from the same
// documents given as plain-text files, and both equal tokenizing the documents directly; bad
// records are tallied once; a trained SentencePiece model is the same file.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "core/data/byte_tokenizer.h"
#include "core/data/dataset_manifest.h"
#include "core/data/prepare.h"
#include "core/data/token_shard.h"
#include "core/data/train_val_split.h"
#include "parallel/comm.h"
#include "tests/mpi/mpi_test_util.h"
#include "tests/unit/data_test_util.h"

namespace dape::data {
namespace {

using test::world;

// A scratch directory that every rank of the job shares: rank 0 makes it (and removes it once
// every rank is done with it).
class SharedScratchDir {
 public:
  SharedScratchDir() {
    if (world().rank() == 0) mine_ = std::make_unique<test::ScratchDir>();
    path_ = world().broadcast_bytes(mine_ ? mine_->path() : std::string(), 0);
  }
  ~SharedScratchDir() { world().barrier(); }
  std::string operator/(const std::string& name) const { return join_path(path_, name); }

 private:
  std::unique_ptr<test::ScratchDir> mine_;
  std::string path_;
};

// Every token of a split, shards read in manifest order.
std::vector<int32_t> read_split(const std::string& dir, bool validation) {
  const Dataset m = load_manifest(dir);
  std::vector<int32_t> out;
  for (const Shard& s : (validation ? m.validation() : m.train()).shards()) {
    TokenShardReader r(join_path(dir, s.file()));
    const size_t at = out.size();
    out.resize(at + static_cast<size_t>(r.size()));
    r.read(0, r.size(), out.data() + at);
  }
  return out;
}

// Documents of varied length (some empty-ish, some long), with multi-byte characters and JSON
// escapes, so that frames and rank ranges fall inside lines and characters.
std::vector<std::string> sample_documents(int count) {
  std::vector<std::string> docs;
  for (int i = 0; i < count; ++i) {
    std::string text = fmt::format("doc {} caf\xc3\xa9 \xe2\x9c\x93 \"quoted\"\n", i);
    text += std::string(static_cast<size_t>((i * 97) % 700), static_cast<char>('a' + i % 26));
    docs.push_back(text);
  }
  return docs;
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// The documents as two .jsonl.zst files of several frames each (cut inside lines), with a meta
// field; and as a directory of plain-text files, one per document, in the same order.
std::vector<std::string> write_corpus(const SharedScratchDir& dir, const std::string& name,
                                      const std::vector<std::string>& docs,
                                      const std::vector<size_t>& bad_lines = {}) {
  if (world().rank() == 0) {
    std::string files[2];
    for (size_t i = 0; i < docs.size(); ++i) {
      const bool bad = std::find(bad_lines.begin(), bad_lines.end(), i) != bad_lines.end();
      files[i < docs.size() / 3 ? 0 : 1] +=
          bad ? "{\"text\": \"unterminated\n"
              : fmt::format("{{\"text\": {}, \"meta\": {{\"i\": {}}}}}\n", json_string(docs[i]), i);
      if (!bad) test::write_bytes(dir / fmt::format("{}_text/{:04}.txt", name, i), docs[i]);
    }
    for (int f = 0; f < 2; ++f) {
      const std::string& s = files[f];
      test::write_bytes(dir / fmt::format("{}_{}.jsonl.zst", name, f),
                        test::zstd_frames(s, {s.size() / 5 + 3, s.size() / 2 + 1, s.size() - 7}));
    }
  }
  world().barrier();
  return {dir / (name + "_0.jsonl.zst"), dir / (name + "_1.jsonl.zst")};
}

PrepareOptions options(std::vector<std::string> inputs, const std::string& out, double val) {
  PrepareOptions o;
  o.inputs = std::move(inputs);
  o.out_dir = out;
  o.val_fraction = val;
  o.shard_tokens = 4000;  // several shards per rank
  o.show_progress = false;
  return o;
}

TEST(ParallelPrepare, JsonlZstGivesTheStreamOfOneProcessAndOfDirectTokenization) {
  SharedScratchDir dir;
  // 41 documents split by document, 7 by the tail of each.
  for (int count : {41, 7}) {
    const std::string name = fmt::format("c{}", count);
    const auto docs = sample_documents(count);
    const auto inputs = write_corpus(dir, name, docs);
    const PrepareSummary s = prepare_dataset(options(inputs, dir / (name + "_par"), 0.1), world());
    if (world().rank() != 0) continue;
    LocalCommunicator one;
    const PrepareSummary t =
        prepare_dataset(options({dir / (name + "_text")}, dir / (name + "_one"), 0.1), one);
    const auto train = read_split(dir / (name + "_par"), false);
    const auto val = read_split(dir / (name + "_par"), true);
    EXPECT_EQ(train, read_split(dir / (name + "_one"), false)) << count << " documents";
    EXPECT_EQ(val, read_split(dir / (name + "_one"), true)) << count << " documents";
    // Directly: every document's bytes and an end-of-document token, split by the rule.
    ByteTokenizer bytes;
    const TrainValSplit rule(count, 0.1);
    std::vector<int32_t> want_train, want_val;
    for (int i = 0; i < count; ++i) {
      std::vector<int32_t> ids;
      bytes.encode(docs[static_cast<size_t>(i)], ids);
      ids.push_back(bytes.eod_id());
      if (rule.by_document()) {
        auto& to = rule.is_validation_document(i) ? want_val : want_train;
        to.insert(to.end(), ids.begin(), ids.end());
      } else {
        const auto n = static_cast<int64_t>(ids.size());
        const int64_t tail = rule.validation_tail(n);
        want_train.insert(want_train.end(), ids.begin(), ids.end() - tail);
        if (tail > 0) want_train.push_back(bytes.eod_id());
        want_val.insert(want_val.end(), ids.end() - tail, ids.end());
      }
    }
    EXPECT_EQ(train, want_train);
    EXPECT_EQ(val, want_val);
    EXPECT_EQ(s.documents, count);
    EXPECT_EQ(s.ranks, world().size());
    EXPECT_EQ(s.train_tokens, t.train_tokens);
    EXPECT_EQ(s.validation_tokens, t.validation_tokens);
    EXPECT_EQ(s.train_documents, t.train_documents);
    EXPECT_EQ(s.validation_documents, t.validation_documents);
    EXPECT_EQ(s.train_entropy_nats, t.train_entropy_nats);
    // Each rank wrote shards of its own, listed in rank order.
    const Dataset m = load_manifest(dir / (name + "_par"));
    EXPECT_GE(m.train().shards_size(), world().size());
    if (world().size() > 1) {
      EXPECT_EQ(m.train().shards(0).file(), "train_r000_00000.tok");
      EXPECT_EQ(m.train().shards(m.train().shards_size() - 1).file().substr(0, 10),
                fmt::format("train_r{:03}", world().size() - 1));
    }
  }
}

TEST(ParallelPrepare, BadRecordsAreTalliedOnceWhateverTheRanks) {
  SharedScratchDir dir;
  const auto docs = sample_documents(30);
  const std::vector<size_t> bad = {2, 3, 17, 29};
  const auto inputs = write_corpus(dir, "bad", docs, bad);
  PrepareOptions o = options(inputs, dir / "par", 0.1);
  o.reader.on_bad_record = ReaderOptions::BadRecords::skip;
  const PrepareSummary s = prepare_dataset(o, world());
  EXPECT_EQ(s.documents, 30);
  EXPECT_EQ(s.skipped_records, 4);
  ASSERT_EQ(s.bad_records.size(), 1u);
  const auto& [reason, tally] = *s.bad_records.begin();
  EXPECT_EQ(reason, "malformed JSON");
  EXPECT_EQ(tally.count, 4);
  EXPECT_NE(tally.first.find("bad_0.jsonl.zst"), std::string::npos) << tally.first;
  EXPECT_NE(tally.first.find("line 3"), std::string::npos) << tally.first;
  if (world().rank() != 0) return;
  LocalCommunicator one;
  PrepareOptions local = o;
  local.out_dir = dir / "one";
  const PrepareSummary t = prepare_dataset(local, one);
  EXPECT_EQ(t.bad_records.begin()->second.first, tally.first);
  EXPECT_EQ(read_split(dir / "par", false), read_split(dir / "one", false));
  EXPECT_EQ(read_split(dir / "par", true), read_split(dir / "one", true));
}

TEST(ParallelPrepare, TrainedSentencePieceModelAndStreamDoNotDependOnTheRanks) {
  SharedScratchDir dir;
  std::vector<std::string> docs;
  for (int i = 0; i < 24; ++i) {
    docs.push_back(fmt::format(
        "In the beginning {} the earth was without form, and void; and darkness was upon the "
        "face of the deep {}. \xce\xbb\xcf\x8c\xce\xb3\xce\xbf\xcf\x82 {}\n",
        i, i * i, std::string(static_cast<size_t>(i % 5), 'z')));
  }
  const auto inputs = write_corpus(dir, "sp", docs);
  PrepareOptions o = options(inputs, dir / "par", 0.1);
  o.tokenizer = "train-sp:340";  // ≈40 characters, the rest merges
  const PrepareSummary s = prepare_dataset(o, world());
  EXPECT_EQ(s.ranks, world().size());
  if (world().rank() != 0) return;
  LocalCommunicator one;
  o.out_dir = dir / "one";
  prepare_dataset(o, one);
  EXPECT_EQ(read_file(dir / "par/tokenizer.model"), read_file(dir / "one/tokenizer.model"));
  const auto train = read_split(dir / "par", false);
  EXPECT_EQ(train, read_split(dir / "one", false));
  EXPECT_EQ(read_split(dir / "par", true), read_split(dir / "one", true));
  size_t text_bytes = 0;
  for (const auto& d : docs) text_bytes += d.size();
  // Byte-level would be ≈0.9 · text_bytes for the training split alone; BPE merges.
  EXPECT_LT(static_cast<double>(train.size()), 0.7 * static_cast<double>(text_bytes))
      << "the BPE model should merge bytes";
}

}  // namespace
}  // namespace dape::data
