#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "core/data/dataset.h"
#include "core/data/dataset_manifest.h"
#include "core/data/prepare.h"
#include "core/data/text_documents.h"
#include "core/data/train_val_split.h"
#include "tests/unit/data_test_util.h"

namespace dape::data {
namespace {

using test::expect_error;
using test::ScratchDir;

constexpr int32_t kEod = 256;

// Byte tokens of `text`, optionally followed by the end-of-document token; written out by hand
// so the tests do not lean on the tokenizer under test.
std::vector<int32_t> bytes_of(const std::string& text, bool eod) {
  std::vector<int32_t> v;
  for (unsigned char c : text) v.push_back(c);
  if (eod) v.push_back(kEod);
  return v;
}

void append(std::vector<int32_t>& to, const std::vector<int32_t>& more) {
  to.insert(to.end(), more.begin(), more.end());
}

std::vector<int32_t> read_all(const TokenStream& s) {
  std::vector<int32_t> v(static_cast<size_t>(s.size()));
  s.read(0, s.size(), v.data());
  return v;
}

// A deterministic document of `n` printable bytes, different per `seed`.
std::string document_text(size_t n, int seed) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + (i * 7 + seed * 3) % 26));
  return s;
}

PrepareOptions options_for(std::vector<std::string> inputs, std::string out, double f) {
  PrepareOptions o;
  o.inputs = std::move(inputs);
  o.out_dir = std::move(out);
  o.val_fraction = f;
  o.show_progress = false;
  return o;
}

TEST(TrainValSplit, CeilFractionIsExact) {
  EXPECT_EQ(ceil_fraction(0.1, 30), 3);  // 0.1 * 30 = 3.0000000000000004 in floating point
  EXPECT_EQ(ceil_fraction(0.1, 31), 4);
  EXPECT_EQ(ceil_fraction(0.3, 10), 3);
  EXPECT_EQ(ceil_fraction(0.01, 1000), 10);
  EXPECT_EQ(ceil_fraction(0.01, 1001), 11);
  EXPECT_EQ(ceil_fraction(0.0, 12345), 0);
  EXPECT_EQ(ceil_fraction(0.5, 0), 0);
  EXPECT_EQ(ceil_fraction(0.05, int64_t{4300000000}), 215000000);
  expect_error([] { ceil_fraction(1.0, 3); }, {"1", "[0, 1)"});
  expect_error([] { ceil_fraction(-0.1, 3); }, {"-0.1", "[0, 1)"});
  expect_error([] { ceil_fraction(std::nan(""), 3); }, {"nan"});
}

TEST(TrainValSplit, DocumentSelectionIsEvenlySpreadAndExact) {
  for (int64_t docs = 20; docs <= 130; docs += 11) {
    for (double f : {0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.9, 0.99}) {
      const TrainValSplit rule(docs, f);
      ASSERT_TRUE(rule.by_document());
      const int64_t v = rule.validation_documents();
      EXPECT_EQ(v, static_cast<int64_t>(std::ceil(f * docs - 1e-9)));
      std::set<int64_t> expected;  // the rule as stated: ⌊(2k+1)·D/(2V)⌋
      for (int64_t k = 0; k < v; ++k) expected.insert((2 * k + 1) * docs / (2 * v));
      EXPECT_EQ(static_cast<int64_t>(expected.size()), v);
      for (int64_t d = 0; d < docs; ++d)
        EXPECT_EQ(rule.is_validation_document(d), expected.count(d) == 1)
            << "docs " << docs << " f " << f << " doc " << d;
    }
  }
  EXPECT_FALSE(TrainValSplit(19, 0.1).by_document());
  EXPECT_TRUE(TrainValSplit(20, 0.1).by_document());
}

TEST(Prepare, SingleDocumentGivesItsTailToValidation) {
  ScratchDir dir;
  const std::string text = document_text(999, 1);  // 999 bytes + end of document = 1000 tokens
  test::write_bytes(dir / "book.txt", text);
  const auto s = prepare_dataset(options_for({dir / "book.txt"}, dir / "ds", 0.1));
  EXPECT_FALSE(s.split_by_document);
  EXPECT_EQ(s.documents, 1);
  EXPECT_EQ(s.validation_tokens, 100);  // ⌈0.1·1000⌉, ending with the end of document
  EXPECT_EQ(s.train_tokens, 900 + 1);   // the first 900, closed by an end of document
  TokenDataset ds(dir / "ds", {.verify_checksums = true, .show_progress = false});
  EXPECT_EQ(read_all(ds.train()), bytes_of(text.substr(0, 900), true));
  EXPECT_EQ(read_all(ds.validation()), bytes_of(text.substr(900), true));
  EXPECT_EQ(ds.manifest().train().documents(), 1);
  EXPECT_EQ(ds.manifest().validation().documents(), 1);
}

TEST(Prepare, FewDocumentsEachGiveTheirTail) {
  ScratchDir dir;
  std::vector<std::string> texts = {document_text(49, 1), document_text(9, 2), "",
                                    document_text(200, 3)};
  std::vector<int32_t> train, val;
  for (size_t i = 0; i < texts.size(); ++i) {
    test::write_bytes(dir / fmt::format("in/{}.txt", i), texts[i]);
    const auto n = static_cast<int64_t>(texts[i].size()) + 1;
    const int64_t tail = static_cast<int64_t>(std::ceil(0.05 * n - 1e-9));  // 3, 1, 1, 11
    const auto all = bytes_of(texts[i], true);
    if (tail < n) {
      append(train, std::vector<int32_t>(all.begin(), all.end() - tail));
      train.push_back(kEod);
    }
    append(val, std::vector<int32_t>(all.end() - tail, all.end()));
  }
  const auto s = prepare_dataset(options_for({dir / "in"}, dir / "ds", 0.05));
  EXPECT_EQ(s.documents, 4);
  EXPECT_EQ(s.validation_tokens, 3 + 1 + 1 + 11);
  EXPECT_EQ(s.train_tokens, (50 - 3 + 1) + (10 - 1 + 1) + 0 + (201 - 11 + 1));
  TokenDataset ds(dir / "ds", {.verify_checksums = true, .show_progress = false});
  EXPECT_EQ(read_all(ds.train()), train);
  EXPECT_EQ(read_all(ds.validation()), val);
}

TEST(Prepare, TwentyFiveDocumentsSplitByDocument) {
  ScratchDir dir;
  std::vector<std::string> texts;
  for (int i = 0; i < 25; ++i) {
    texts.push_back(document_text(10 + static_cast<size_t>(i) * 3, i));
    test::write_bytes(dir / fmt::format("in/doc_{:02d}.txt", i), texts.back());
  }
  // ⌈0.1·25⌉ = 3 validation documents: ⌊25/6⌋ = 4, ⌊75/6⌋ = 12, ⌊125/6⌋ = 20.
  const std::set<int> val_docs = {4, 12, 20};
  std::vector<int32_t> train, val;
  for (int i = 0; i < 25; ++i) append(val_docs.count(i) ? val : train, bytes_of(texts[i], true));
  auto o = options_for({dir / "in"}, dir / "ds", 0.1);
  o.shard_tokens = 64;
  const auto s = prepare_dataset(o);
  EXPECT_TRUE(s.split_by_document);
  EXPECT_EQ(s.train_documents, 22);
  EXPECT_EQ(s.validation_documents, 3);
  EXPECT_EQ(s.validation_tokens, (10 + 12 + 1) + (10 + 36 + 1) + (10 + 60 + 1));
  EXPECT_EQ(s.train_tokens + s.validation_tokens, 25 * 10 + 3 * (24 * 25 / 2) + 25);
  TokenDataset ds(dir / "ds", {.verify_checksums = true, .show_progress = false});
  EXPECT_EQ(read_all(ds.train()), train);
  EXPECT_EQ(read_all(ds.validation()), val);
  // Shards of at most 64 tokens, numbered from 0, documents counted by end-of-document tokens.
  const auto& m = ds.manifest();
  EXPECT_EQ(m.train().shards_size(), (s.train_tokens + 63) / 64);
  int64_t eods = 0;
  for (int i = 0; i < m.train().shards_size(); ++i) {
    EXPECT_EQ(m.train().shards(i).file(), fmt::format("train_{:05d}.tok", i));
    EXPECT_LE(m.train().shards(i).tokens(), 64);
    eods += m.train().shards(i).documents();
  }
  EXPECT_EQ(eods, 22);
  EXPECT_EQ(m.validation().shards(0).file(), "val_00000.tok");
}

TEST(Prepare, ZeroValidationFractionKeepsEverythingForTraining) {
  ScratchDir dir;
  test::write_bytes(dir / "a.txt", "hello");
  const auto s = prepare_dataset(options_for({dir / "a.txt"}, dir / "ds", 0.0));
  EXPECT_EQ(s.train_tokens, 6);
  EXPECT_EQ(s.validation_tokens, 0);
  TokenDataset ds(dir / "ds");
  EXPECT_EQ(ds.validation().size(), 0);
  EXPECT_EQ(ds.manifest().validation().shards_size(), 0);
}

TEST(Prepare, UnigramEntropyMatchesTheTrainStream) {
  ScratchDir dir;
  test::write_bytes(dir / "a.txt", "aab");  // + end of document: tokens a a b EOD, no validation
  const auto s = prepare_dataset(options_for({dir / "a.txt"}, dir / "ds", 0.0));
  const double expected = -(0.5 * std::log(0.5) + 2 * 0.25 * std::log(0.25));
  EXPECT_NEAR(s.train_entropy_nats, expected, 1e-12);
  EXPECT_NEAR(s.train_entropy_bits, 1.5, 1e-12);
  EXPECT_NEAR(TokenDataset(dir / "ds").manifest().train_unigram_entropy(), expected, 1e-12);

  // On a larger input, against counts taken from the stream itself.
  test::write_bytes(dir / "b.txt", document_text(5000, 4) + "xyz\n\n");
  const auto s2 = prepare_dataset(options_for({dir / "b.txt"}, dir / "ds2", 0.1));
  const auto train = read_all(TokenDataset(dir / "ds2").train());
  std::map<int32_t, double> counts;
  for (int32_t t : train) counts[t] += 1;
  double h = 0;
  for (auto [id, c] : counts) h -= c / train.size() * std::log(c / train.size());
  EXPECT_NEAR(s2.train_entropy_nats, h, 1e-9);
}

TEST(Prepare, OutputIsDeterministic) {
  ScratchDir dir;
  for (int i = 0; i < 23; ++i)
    test::write_bytes(dir / fmt::format("in/{:02d}.txt", i), document_text(100 + i, i));
  for (const char* out : {"one", "two"}) {
    auto o = options_for({dir / "in"}, dir / out, 0.1);
    o.shard_tokens = 500;
    prepare_dataset(o);
  }
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir / "one"))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_GT(names.size(), 3u);
  for (const auto& n : names)
    EXPECT_EQ(read_file(dir / ("one/" + n)), read_file(dir / ("two/" + n))) << n;
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir / "two"),
                          std::filesystem::directory_iterator()),
            static_cast<long>(names.size()));
}

TEST(Prepare, DirectoriesAreWalkedSortedSkippingHiddenEntries) {
  ScratchDir dir;
  test::write_bytes(dir / "in/b.txt", "B");
  test::write_bytes(dir / "in/a.txt", "A");
  test::write_bytes(dir / "in/a/z.txt", "Z");
  test::write_bytes(dir / "in/.hidden", "H");
  test::write_bytes(dir / "in/.git/config", "G");
  test::write_bytes(dir / "c.txt", "C");
  const auto files = list_input_files({dir / "c.txt", dir / "in"});
  EXPECT_EQ(files, (std::vector<std::string>{dir / "c.txt", dir / "in/a/z.txt", dir / "in/a.txt",
                                             dir / "in/b.txt"}));
  prepare_dataset(options_for({dir / "c.txt", dir / "in"}, dir / "ds", 0.0));
  EXPECT_EQ(read_all(TokenDataset(dir / "ds").train()),
            (std::vector<int32_t>{'C', kEod, 'Z', kEod, 'A', kEod, 'B', kEod}));
}

TEST(Prepare, MissingInputIsNamed) {
  ScratchDir dir;
  test::write_bytes(dir / "a.txt", "x");
  expect_error(
      [&] {
        prepare_dataset(options_for({dir / "a.txt", dir / "nope"}, dir / "ds", 0));
      },
      {dir / "nope", "does not exist"});
  EXPECT_FALSE(std::filesystem::exists(dir / "ds"));  // nothing written before inputs are known
}

TEST(Prepare, RefusesANonEmptyDirectoryThatIsNotADataset) {
  ScratchDir dir;
  test::write_bytes(dir / "a.txt", "x");
  test::write_bytes(dir / "out/notes.md", "mine");
  expect_error([&] { prepare_dataset(options_for({dir / "a.txt"}, dir / "out", 0)); },
               {dir / "out", "not a dataset", "notes.md"});
  EXPECT_EQ(read_file(dir / "out/notes.md"), "mine");
  test::write_bytes(dir / "file", "");
  expect_error([&] { prepare_dataset(options_for({dir / "a.txt"}, dir / "file", 0)); },
               {dir / "file", "not a directory"});
}

TEST(Prepare, RefusesAnOutputInsideAnInputDirectory) {
  ScratchDir dir;
  test::write_bytes(dir / "in/a.txt", "x");
  expect_error([&] { prepare_dataset(options_for({dir / "in"}, dir / "in/ds", 0)); },
               {dir / "in/ds", "inside input directory", dir / "in"});
  expect_error([&] { prepare_dataset(options_for({dir / "in/"}, dir / "in", 0)); },
               {"inside input directory"});
  EXPECT_FALSE(std::filesystem::exists(dir / "in/ds"));
  prepare_dataset(options_for({dir / "in"}, dir / "inside", 0));  // a sibling named alike is fine
}

TEST(Prepare, ReplacesAnEarlierDatasetWithoutStaleShards) {
  ScratchDir dir;
  test::write_bytes(dir / "a.txt", document_text(300, 1));
  auto o = options_for({dir / "a.txt"}, dir / "ds", 0.0);
  o.shard_tokens = 50;
  prepare_dataset(o);
  EXPECT_TRUE(std::filesystem::exists(dir / "ds/train_00006.tok"));
  test::write_bytes(dir / "ds/README", "kept");  // a dataset may hold other files
  o.shard_tokens = 1000;
  prepare_dataset(o);
  EXPECT_TRUE(std::filesystem::exists(dir / "ds/train_00000.tok"));
  EXPECT_FALSE(std::filesystem::exists(dir / "ds/train_00001.tok"));
  EXPECT_FALSE(std::filesystem::exists(dir / "ds/train_00006.tok"));
  EXPECT_EQ(read_file(dir / "ds/README"), "kept");
  EXPECT_EQ(TokenDataset(dir / "ds").train().size(), 301);
}

TEST(Prepare, AcceptsTheLeftoversOfAnInterruptedRun) {
  ScratchDir dir;
  test::write_bytes(dir / "a.txt", "abc");
  test::write_bytes(dir / "ds/train_00000.tok", "partial");
  test::write_bytes(dir / "ds/train_00001.tok.tmp", "partial");
  prepare_dataset(options_for({dir / "a.txt"}, dir / "ds", 0.0));
  EXPECT_FALSE(std::filesystem::exists(dir / "ds/train_00001.tok.tmp"));
  EXPECT_EQ(TokenDataset(dir / "ds").train().size(), 4);
}

TEST(Prepare, RejectsWhatIsNotSupportedYet) {
  ScratchDir dir;
  test::write_bytes(dir / "a.txt", "x");
  test::write_bytes(dir / "b.jsonl", "{\"text\": \"x\"}\n");
  auto o = options_for({dir / "a.txt"}, dir / "ds", 0.0);
  o.tokenizer = "sp:m.model";
  expect_error([&] { prepare_dataset(o); }, {"sp:m.model", "m.model", "does not exist"});
  o.tokenizer = "byte";
  o.format = "megatron";  // already tokenized: training reads it directly
  expect_error([&] { prepare_dataset(o); }, {"megatron", "dape train", "supported: auto"});
  o.format = "auto";
  o.inputs = {dir / "b.jsonl"};
  // JSON lines, by its name: "x" and the end of document.
  EXPECT_EQ(prepare_dataset(o).train_tokens, 2);
  o.format = "text";  // read as plain text when asked
  EXPECT_EQ(prepare_dataset(o).train_tokens, 15);
}

TEST(Prepare, RejectsBadOptionsAndEmptyResults) {
  ScratchDir dir;
  test::write_bytes(dir / "a.txt", "x");
  expect_error([&] { prepare_dataset(options_for({dir / "a.txt"}, dir / "ds", 1.0)); },
               {"validation fraction 1", "[0, 1)"});
  expect_error([&] { prepare_dataset(options_for({dir / "a.txt"}, dir / "ds", 0.9999999999)); },
               {"training split would be empty"});
  std::filesystem::create_directories(dir / "empty");
  expect_error([&] { prepare_dataset(options_for({dir / "empty"}, dir / "ds2", 0.1)); },
               {"no documents"});
  auto o = options_for({dir / "a.txt"}, dir / "ds3", 0.1);
  o.shard_tokens = 0;
  expect_error([&] { prepare_dataset(o); }, {"shard_tokens", "0"});
}

TEST(Prepare, SummaryMentionsTheFigures) {
  ScratchDir dir;
  test::write_bytes(dir / "a.txt", document_text(99, 1));
  const auto s = prepare_dataset(options_for({dir / "a.txt"}, dir / "ds", 0.1));
  const std::string text = format_prepare_summary(s);
  EXPECT_NE(text.find("1 documents"), std::string::npos) << text;
  EXPECT_NE(text.find("91 tokens"), std::string::npos) << text;
  EXPECT_NE(text.find("10 tokens"), std::string::npos) << text;
  EXPECT_NE(text.find("bits per token"), std::string::npos) << text;
}

}  // namespace
}  // namespace dape::data
