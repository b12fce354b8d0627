// SentencePiece tokenizers: the text cuts, training on a generated corpus through `prepare`, the
// exact round trip, agreement with SentencePiece's own encoding and decoding (run in its worker),
// the end-of-document token, manifests, determinism, and the errors a user can meet.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/checksum.h"
#include "common/rng.h"
#include "core/data/dataset.h"
#include "core/data/dataset_manifest.h"
#include "core/data/prepare.h"
#include "core/data/sentencepiece_text.h"
#include "core/data/sentencepiece_tokenizer.h"
#include "core/data/sentencepiece_worker.h"
#include "core/data/text_documents.h"
#include "tests/unit/data_test_util.h"

namespace dape::data {
namespace {

using test::expect_error;
using test::ScratchDir;

constexpr int32_t kVocab = 400;

// Lines of words (some accented, CJK, an emoji, numbers like verse marks), blank lines and
// indented lines: text with the shapes of real text, deterministic in `seed`.
std::string corpus_text(int lines, uint64_t seed) {
  static const char* words[] = {
      "in",   "the",  "beginning", "was",    "word",  "and",     "light",  "darkness",
      "said", "let",  "there",     "be",     "water", "earth",   "heaven", "God",
      "made", "of",   "firmament", "café",   "naïve", "Straße",  "über",   "日本語",
      "😀",    "1:1",  "2:3",       "—",      "it",    "good",    "day",    "night",
      "upon", "face", "deep",      "spirit", "moved", "divided", "from",   "unto"};
  constexpr size_t kWords = sizeof words / sizeof words[0];
  Rng r(seed, 3);
  std::string s;
  for (int i = 0; i < lines; ++i) {
    if (r.below(10) == 0) {
      s += "\n";
      continue;
    }
    if (r.below(4) == 0) s += "  " + std::to_string(1 + r.below(40)) + " ";
    const uint64_t n = 3 + r.below(12);
    for (uint64_t k = 0; k < n; ++k) {
      if (k) s += r.below(15) == 0 ? ", " : " ";
      s += words[r.below(kWords)];
    }
    s += r.below(3) == 0 ? ".\n" : "\n";
  }
  return s;
}

PrepareOptions prepare_options(std::vector<std::string> inputs, std::string out,
                               std::string tokenizer) {
  PrepareOptions o;
  o.inputs = std::move(inputs);
  o.out_dir = std::move(out);
  o.tokenizer = std::move(tokenizer);
  o.val_fraction = 0.05;
  o.show_progress = false;
  return o;
}

std::vector<int32_t> read_all(const TokenStream& s) {
  std::vector<int32_t> v(static_cast<size_t>(s.size()));
  s.read(0, s.size(), v.data());
  return v;
}

// Text that exercises every case of the exact round trip.
std::vector<std::string> awkward_texts() {
  std::string controls;
  for (int c = 0; c < 0x20; ++c) controls.push_back(static_cast<char>(c));
  return {
      "",
      "in the beginning",
      "  leading, trailing  and   repeated spaces  ",
      "\n\nlines\r\nwith CR LF\n\n\n",
      "tabs\tand\vother\fwhite space",
      controls + "\x7f",
      std::string("a NUL \0 inside", 14),
      "not in training: ελληνικά, 中文, עברית, हिन्दी, 🎉🎉",
      "combining e\xCC\x81 and precomposed \xC3\xA9",
      "SentencePiece's own mark \xE2\x96\x81 and a spaced \xE2\x96\x81 mark\xE2\x96\x81",
      "the literal </s> and <unk> and <0x41> are text",
      "invalid UTF-8: \xff\xfe, lone \x80 continuation, truncated \xE2\x96",
      "overlong \xC0\xAF and \xE0\x80\xAF, surrogate \xED\xA0\x80, too high \xF4\x90\x80\x80",
      std::string(5000, 'x') + " one very long word",
      "ends without a line feed",
  };
}

// One model, trained once through `prepare` on a generated corpus; shared by the tests.
class SentencePieceTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir;
    corpus_ = new std::string(corpus_text(3000, 1));
    test::write_bytes(*dir_ / "corpus.txt", *corpus_);
    prepare_dataset(prepare_options({*dir_ / "corpus.txt"}, *dir_ / "ds",
                                    "train-sp:" + std::to_string(kVocab)));
    model_ = new std::string(read_file(*dir_ / "ds/tokenizer.model"));
    tokenizer_ = new SentencePieceTokenizer(*model_, "test model", "train-sp:400");
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete model_;
    delete corpus_;
    delete dir_;
  }
  static ScratchDir* dir_;
  static std::string* corpus_;
  static std::string* model_;
  static SentencePieceTokenizer* tokenizer_;
};
ScratchDir* SentencePieceTest::dir_ = nullptr;
std::string* SentencePieceTest::corpus_ = nullptr;
std::string* SentencePieceTest::model_ = nullptr;
SentencePieceTokenizer* SentencePieceTest::tokenizer_ = nullptr;

TEST(SentencePieceText, Utf8ValidationIsStrict) {
  auto len = [](std::string_view s) { return utf8_char_length(s, 0); };
  EXPECT_EQ(len("a"), 1);
  EXPECT_EQ(len("\xC3\xA9"), 2);
  EXPECT_EQ(len("\xE2\x96\x81"), 3);
  EXPECT_EQ(len("\xF0\x9F\x98\x80"), 4);
  EXPECT_EQ(len("\xF4\x8F\xBF\xBF"), 4);  // U+10FFFF
  EXPECT_EQ(len("\x80"), 0);              // a lone continuation byte
  EXPECT_EQ(len("\xC0\xAF"), 0);          // overlong
  EXPECT_EQ(len("\xC1\xBF"), 0);          // overlong
  EXPECT_EQ(len("\xE0\x80\xAF"), 0);      // overlong
  EXPECT_EQ(len("\xF0\x80\x80\xAF"), 0);  // overlong
  EXPECT_EQ(len("\xED\xA0\x80"), 0);      // a surrogate
  EXPECT_EQ(len("\xF4\x90\x80\x80"), 0);  // above U+10FFFF
  EXPECT_EQ(len("\xF5\x80\x80\x80"), 0);
  EXPECT_EQ(len("\xE2\x96"), 0);  // truncated
  EXPECT_EQ(len("\xC3"), 0);
}

TEST(SentencePieceText, WordsAndRawBytesRebuildTheTextWithCutsWhereDocumented) {
  const std::string text = "In  the\nbeginning \xff was\xE2\x96\x81the word\n\n";
  std::vector<std::string> words;
  std::string rebuilt;
  split_words(
      text, /*cut_words=*/true,
      [&](std::string_view w) {
        words.emplace_back(w);
        rebuilt += w;
      },
      [&](unsigned char b) {
        words.push_back(fmt::format("<{:02x}>", b));
        rebuilt.push_back(static_cast<char>(b));
      });
  EXPECT_EQ(rebuilt, text);
  EXPECT_EQ(words, (std::vector<std::string>{"In", " ", " the\n", "beginning", " ", "<ff>", " was",
                                             "<e2>", "<96>", "<81>", "the", " word\n", "\n"}));
  words.clear();
  split_words(
      text, /*cut_words=*/false, [&](std::string_view w) { words.emplace_back(w); },
      [&](unsigned char) { words.push_back("raw"); });
  EXPECT_EQ(words, (std::vector<std::string>{"In  the\nbeginning ", "raw", " was", "raw", "raw",
                                             "raw", "the word\n\n"}));
}

TEST(SentencePieceText, SentencesAreLinesWithoutRawBytesCutToTheLimit) {
  std::vector<std::string> got;
  auto collect = [&](std::string_view s) { got.emplace_back(s); };
  split_sentences("one line\ntwo\n\nlast", 100, collect);
  EXPECT_EQ(got, (std::vector<std::string>{"one line\n", "two\n", "\n", "last"}));
  got.clear();
  split_sentences(
      "ab\xff"
      "cd\nef",
      100, collect);
  EXPECT_EQ(got, (std::vector<std::string>{"ab", "cd\n", "ef"}));
  got.clear();
  split_sentences("aaaa bbbb cccc", 8, collect);  // cut before the last space within 8 bytes
  EXPECT_EQ(got, (std::vector<std::string>{"aaaa", " bbbb", " cccc"}));
  got.clear();
  split_sentences("ééééé", 5, collect);  // no space: cut at a character boundary
  EXPECT_EQ(got, (std::vector<std::string>{"éé", "éé", "é"}));
}

TEST_F(SentencePieceTest, TrainedModelHasTheDocumentedLayout) {
  const SentencePieceModel& m = tokenizer_->model();
  EXPECT_EQ(m.size(), kVocab);
  EXPECT_EQ(m.model_type_name(), "BPE");
  EXPECT_EQ(m.unk_id, 0);
  EXPECT_EQ(m.eos_id, 1);
  EXPECT_EQ(m.pieces[1], "</s>");
  EXPECT_EQ(m.types[1], PieceType::control);
  ASSERT_TRUE(m.has_byte_pieces);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(m.byte_ids[static_cast<size_t>(b)], 2 + b);
  EXPECT_TRUE(m.identity_normalizer);
  EXPECT_FALSE(m.add_dummy_prefix);
  EXPECT_FALSE(m.remove_extra_whitespaces);
  EXPECT_TRUE(tokenizer_->encodes_by_word());
  EXPECT_EQ(tokenizer_->eod_id(), 1);
  EXPECT_EQ(tokenizer_->vocab_size(), kVocab);
  // It learned merges: the corpus encodes to fewer tokens than bytes.
  std::vector<int32_t> ids;
  tokenizer_->encode(*corpus_, ids);
  EXPECT_LT(ids.size() * 2, corpus_->size());
}

TEST_F(SentencePieceTest, RoundTripIsExactForAnyBytes) {
  for (const std::string& text : awkward_texts()) {
    std::vector<int32_t> ids;
    tokenizer_->encode(text, ids);
    EXPECT_EQ(tokenizer_->decode(ids), text) << text;
    for (int32_t id : ids) EXPECT_NE(id, tokenizer_->model().unk_id) << text;
  }
  Rng r(11, 0);
  for (int trial = 0; trial < 200; ++trial) {
    std::string text(r.below(300), '\0');
    for (char& c : text) c = static_cast<char>(r.below(256));
    std::vector<int32_t> ids;
    tokenizer_->encode(text, ids);
    ASSERT_EQ(tokenizer_->decode(ids), text) << "trial " << trial;
  }
}

TEST_F(SentencePieceTest, EncodingEqualsSentencePieceOnTheWholeText) {
  // dape encodes word by word with a cache; SentencePiece (in its worker) gets the text whole.
  std::vector<std::string> texts = {corpus_text(300, 2), corpus_text(50, 3)};
  for (const std::string& t : awkward_texts()) {
    bool raw = false;
    split_words(
        t, false, [](std::string_view) {}, [&](unsigned char) { raw = true; });
    if (!raw) texts.push_back(t);  // raw bytes are dape's own business
  }
  for (int pass = 0; pass < 2; ++pass) {  // the second pass is served from the cache
    for (const std::string& text : texts) {
      std::vector<int32_t> ours;
      tokenizer_->encode(text, ours);
      EXPECT_EQ(ours, tokenizer_->sentencepiece_encode(text)) << text.substr(0, 80);
    }
  }
}

TEST_F(SentencePieceTest, DecodingEqualsSentencePiece) {
  // Random ids of every kind but byte pieces (SentencePiece turns byte runs that are not UTF-8
  // into U+FFFD, where dape keeps the bytes), and the encodings of real text.
  Rng r(5, 0);
  const SentencePieceModel& m = tokenizer_->model();
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<int32_t> ids;
    while (ids.size() < 40) {
      const auto id = static_cast<int32_t>(r.below(static_cast<uint64_t>(m.size())));
      if (m.types[static_cast<size_t>(id)] != PieceType::byte && id != m.eos_id) ids.push_back(id);
    }
    EXPECT_EQ(tokenizer_->decode(ids), tokenizer_->sentencepiece_decode(ids)) << "trial " << trial;
  }
  std::vector<int32_t> ids;
  tokenizer_->encode("not in training: ελληνικά 🎉, combining e\xCC\x81", ids);
  EXPECT_EQ(tokenizer_->decode(ids), tokenizer_->sentencepiece_decode(ids));
}

TEST_F(SentencePieceTest, EndOfDocumentIsAControlTokenDroppedOrShown) {
  std::vector<int32_t> ids;
  tokenizer_->encode("the literal </s> is text", ids);
  for (int32_t id : ids) EXPECT_NE(id, tokenizer_->eod_id());
  ids.clear();
  tokenizer_->encode("in the", ids);
  ids.push_back(tokenizer_->eod_id());
  tokenizer_->encode(" beginning", ids);
  EXPECT_EQ(tokenizer_->decode(ids), "in the beginning");
  EXPECT_EQ(tokenizer_->decode(ids, /*show_eod=*/true), "in the\n<|eod|>\n beginning");
}

TEST_F(SentencePieceTest, DecodeRejectsIdsOutsideTheVocabulary) {
  std::vector<int32_t> ids = {5, kVocab};
  expect_error([&] { tokenizer_->decode(ids); }, {"400", "position 1", "[0, 400)"});
  ids = {-1};
  expect_error([&] { tokenizer_->decode(ids); }, {"-1", "position 0"});
}

TEST_F(SentencePieceTest, ManifestRecordsTheModelAndLoadsItBack) {
  const std::string ds = *dir_ / "ds";
  const Dataset m = load_manifest(ds);
  validate_manifest(m, manifest_path(ds));
  EXPECT_EQ(m.tokenizer().kind(), "sentencepiece");
  EXPECT_EQ(m.tokenizer().model_file(), "tokenizer.model");
  EXPECT_EQ(m.tokenizer().eod_id(), 1);
  EXPECT_EQ(m.tokenizer().spec(), "train-sp:400");
  EXPECT_EQ(m.tokenizer().model_xxh64(), xxh64(model_->data(), model_->size()));
  EXPECT_EQ(m.tokenizer().train_max_bytes(), kDefaultTokenizerTrainingBytes);
  EXPECT_EQ(m.tokenizer().train_sample_bytes(), static_cast<int64_t>(corpus_->size()));
  EXPECT_EQ(m.vocab_size(), kVocab);

  const auto tokenizer = tokenizer_from_manifest(m, ds);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->kind(), "sentencepiece");
  // One document split by tokens: train (closed by an end of document) and the validation tail
  // decode back to the corpus.
  TokenDataset dataset(ds, {.verify_checksums = true, .show_progress = false});
  const auto train = read_all(dataset.train()), val = read_all(dataset.validation());
  EXPECT_EQ(train.back(), 1);
  EXPECT_EQ(val.back(), 1);
  EXPECT_EQ(tokenizer->decode(train) + tokenizer->decode(val), *corpus_);
  std::vector<int32_t> all;
  tokenizer_->encode(*corpus_, all);
  EXPECT_EQ(train.size() + val.size(), all.size() + 2);
}

TEST_F(SentencePieceTest, ADatasetsModelIsCheckedAgainstItsManifest) {
  ScratchDir dir;
  std::filesystem::copy(*dir_ / "ds", dir / "ds");
  const Dataset m = load_manifest(dir / "ds");
  std::string bytes = *model_;
  bytes[bytes.size() / 2] ^= 1;
  test::write_bytes(dir / "ds/tokenizer.model", bytes);
  expect_error([&] { tokenizer_from_manifest(m, dir / "ds"); },
               {dir / "ds/tokenizer.model", "checksum"});
  std::filesystem::remove(dir / "ds/tokenizer.model");
  expect_error([&] { tokenizer_from_manifest(m, dir / "ds"); },
               {dir / "ds/tokenizer.model", "missing"});
  Dataset no_file = m;
  no_file.mutable_tokenizer()->clear_model_file();
  expect_error([&] { validate_manifest(no_file, "x/dataset.pbtxt"); },
               {"x/dataset.pbtxt", "model_file"});
}

TEST_F(SentencePieceTest, AGivenModelIsCopiedIntoTheDatasetAndGivesTheSameTokens) {
  ScratchDir dir;
  test::write_bytes(dir / "my.model", *model_);
  prepare_dataset(prepare_options({*dir_ / "corpus.txt"}, dir / "ds", "sp:" + (dir / "my.model")));
  EXPECT_EQ(read_file(dir / "ds/tokenizer.model"), *model_);
  const Dataset m = load_manifest(dir / "ds");
  EXPECT_EQ(m.tokenizer().spec(), "sp:" + (dir / "my.model"));
  EXPECT_FALSE(m.tokenizer().has_train_max_bytes());
  TokenDataset a(*dir_ / "ds"), b(dir / "ds");
  EXPECT_EQ(read_all(a.train()), read_all(b.train()));
  EXPECT_EQ(read_all(a.validation()), read_all(b.validation()));
  // The dataset decodes without the original file.
  std::filesystem::remove(dir / "my.model");
  EXPECT_NE(tokenizer_from_manifest(m, dir / "ds"), nullptr);
}

TEST_F(SentencePieceTest, TrainingIsDeterministicAndUsesTheFirstBytesOnly) {
  ScratchDir dir;
  // Training again on the same input gives the same model file and the same shards.
  prepare_dataset(prepare_options({*dir_ / "corpus.txt"}, dir / "again", "train-sp:400"));
  for (const char* f : {"tokenizer.model", "train_00000.tok", "val_00000.tok"})
    EXPECT_EQ(read_file(dir / (std::string("again/") + f)),
              read_file(*dir_ / (std::string("ds/") + f)))
        << f;
  // With a cap, the sample is the first lines up to the one that reaches it, whatever follows.
  const size_t cap = 60000;
  test::write_bytes(dir / "longer.txt", *corpus_ + corpus_text(2000, 9));
  auto capped = prepare_options({*dir_ / "corpus.txt"}, dir / "capped", "train-sp:400");
  capped.sp_train_bytes = cap;
  prepare_dataset(capped);
  capped.inputs = {dir / "longer.txt"};
  capped.out_dir = dir / "capped_longer";
  prepare_dataset(capped);
  EXPECT_EQ(read_file(dir / "capped/tokenizer.model"),
            read_file(dir / "capped_longer/tokenizer.model"));
  EXPECT_NE(read_file(dir / "capped/tokenizer.model"), *model_);
  const Dataset m = load_manifest(dir / "capped");
  EXPECT_EQ(m.tokenizer().train_max_bytes(), static_cast<int64_t>(cap));
  const int64_t used = m.tokenizer().train_sample_bytes();
  EXPECT_GE(used, static_cast<int64_t>(cap));
  EXPECT_LT(used, static_cast<int64_t>(cap + 200));  // one line past the cap at most
  EXPECT_EQ(corpus_->substr(0, static_cast<size_t>(used)).back(), '\n');
}

TEST_F(SentencePieceTest, AModelWithADummyPrefixEncodesAndDecodesLikeSentencePiece) {
  // A model trained with SentencePiece's defaults (NFKC, a dummy space in front, whitespace
  // removal, no byte pieces): dape encodes it a document at a time and decodes it as the library
  // does, per document.
  SentencePieceWorker worker;
  auto [ok, model] =
      worker.train({{"model_type", "bpe"}, {"vocab_size", "300"}, {"minloglevel", "2"}},
                   [&](const SentencePieceWorker::SentenceSink& send) {
                     split_sentences(*corpus_, 4096, [&](std::string_view s) { send(s); });
                   });
  ASSERT_TRUE(ok) << model;
  SentencePieceTokenizer t(model, "default model", "sp:default.model");
  EXPECT_FALSE(t.encodes_by_word());
  EXPECT_EQ(t.eod_id(), 2);
  EXPECT_TRUE(t.model().add_dummy_prefix);
  for (const std::string& text : {std::string("in the beginning"), corpus_text(20, 4),
                                  std::string("  spaced   out  "), std::string("ελληνικά 1:1")}) {
    std::vector<int32_t> ids;
    t.encode(text, ids);
    EXPECT_EQ(ids, t.sentencepiece_encode(text));
    EXPECT_EQ(t.decode(ids), t.sentencepiece_decode(ids)) << text;
  }
  Rng r(6, 0);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<int32_t> ids;
    for (int k = 0; k < 20; ++k) ids.push_back(static_cast<int32_t>(r.below(300)));
    ids.erase(std::remove(ids.begin(), ids.end(), t.eod_id()), ids.end());
    EXPECT_EQ(t.decode(ids), t.sentencepiece_decode(ids)) << "trial " << trial;
  }
  expect_error(
      [&] {
        std::vector<int32_t> ids;
        t.encode("bad \xff byte", ids);
      },
      {"default model", "byte 4", "not valid UTF-8"});
}

TEST(SentencePieceErrors, SpecsAreCheckedBeforeAnythingIsWritten) {
  ScratchDir dir;
  test::write_bytes(dir / "a.txt", "some text\n");
  auto o = prepare_options({dir / "a.txt"}, dir / "ds", "train-sp:100");
  expect_error([&] { prepare_dataset(o); }, {"train-sp:100", "out of range", "259"});
  o.tokenizer = "train-sp:lots";
  expect_error([&] { prepare_dataset(o); }, {"'lots' is not a vocabulary size"});
  o.tokenizer = "sp:";
  expect_error([&] { prepare_dataset(o); }, {"name the SentencePiece model file"});
  o.tokenizer = "sp:" + (dir / "missing.model");
  expect_error([&] { prepare_dataset(o); }, {dir / "missing.model", "does not exist"});
  o.tokenizer = "sp:" + (dir / "a.txt");
  expect_error([&] { prepare_dataset(o); }, {dir / "a.txt", "not a SentencePiece model"});
  o.tokenizer = "wordpiece";
  expect_error([&] { prepare_dataset(o); }, {"unknown tokenizer 'wordpiece'", "train-sp:VOCAB"});
  o.tokenizer = "train-sp:400";
  o.sp_train_bytes = 0;
  expect_error([&] { prepare_dataset(o); }, {"--sp-train-bytes", "> 0"});
  EXPECT_FALSE(std::filesystem::exists(dir / "ds"));
}

TEST(SentencePieceErrors, InputTooSmallForTheVocabularyIsExplained) {
  ScratchDir dir;
  test::write_bytes(dir / "small.txt", corpus_text(40, 7));
  auto o = prepare_options({dir / "small.txt"}, dir / "ds", "train-sp:5000");
  const std::string msg = expect_error(
      [&] { prepare_dataset(o); },
      {"train-sp:5000", "too small for a vocabulary of 5000", "at most", "give more input"});
  EXPECT_FALSE(std::filesystem::exists(dir / "ds"));  // training comes before any output
  // The sample cap is named when it is what limits the sample.
  o.sp_train_bytes = 100;
  expect_error([&] { prepare_dataset(o); }, {"--sp-train-bytes, now 100"});
  // A vocabulary too small for the characters of the input.
  test::write_bytes(dir / "chars.txt", "αβγδεζηθικλμνξοπρστυφχψω ABCDEFGHIJKLMNOPQRSTUVWXYZ\n");
  o = prepare_options({dir / "chars.txt"}, dir / "ds", "train-sp:260");
  expect_error([&] { prepare_dataset(o); },
               {"train-sp:260", "too small for this input", "at least"});
  test::write_bytes(dir / "empty.txt", "");
  o = prepare_options({dir / "empty.txt"}, dir / "ds", "train-sp:300");
  expect_error([&] { prepare_dataset(o); }, {"no text to train on"});
}

TEST(SentencePieceErrors, AModelWithoutEndOfSentencePieceIsRefused) {
  ScratchDir dir;
  SentencePieceWorker worker;
  const std::string text = corpus_text(200, 8);
  auto [ok, model] = worker.train(
      {{"model_type", "bpe"}, {"vocab_size", "200"}, {"eos_id", "-1"}, {"minloglevel", "2"}},
      [&](const SentencePieceWorker::SentenceSink& send) {
        split_sentences(text, 4096, [&](std::string_view s) { send(s); });
      });
  ASSERT_TRUE(ok) << model;
  test::write_bytes(dir / "no_eos.model", model);
  expect_error([&] { make_tokenizer("sp:" + (dir / "no_eos.model")); },
               {"sp:" + (dir / "no_eos.model"), "no end-of-sentence piece"});
}

}  // namespace
}  // namespace dape::data
