// JSON lines and zstd input: documents decoded exactly across blocks and frames, prepare's token
// stream against plain text, record numbering, skip(n), and every kind of bad record under both
// policies.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "core/data/dataset.h"
#include "core/data/document_source.h"
#include "core/data/jsonl_documents.h"
#include "core/data/line_reader.h"
#include "core/data/prepare.h"
#include "core/data/zstd_stream.h"
#include "tests/unit/data_test_util.h"

namespace dape::data {
namespace {

using test::expect_error;
using test::ScratchDir;
using BadRecords = ReaderOptions::BadRecords;

constexpr int32_t kEod = 256;

// `s` as a JSON string literal: quotes, backslashes and control bytes escaped, other bytes as
// they are (UTF-8 passes through).
std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// Documents that exercise the decoder: unicode (2-, 3- and 4-byte UTF-8), escapes, an empty
// text, a long one.
std::vector<std::string> sample_documents() {
  std::vector<std::string> docs = {
      "In the beginning God created the heaven and the earth.",
      "Caf\xc3\xa9 na\xc3\xafve \xe2\x9c\x93 \xf0\x9f\x8e\x89 \xe4\xb8\xad\xe6\x96\x87",
      "quotes \" and backslashes \\ and\na newline and a\ttab",
      "",
      "control \x01\x1f bytes",
  };
  std::string long_doc;
  for (int i = 0; i < 3000; ++i) long_doc += fmt::format("word{} ", i * 7919 % 1000);
  docs.push_back(long_doc);
  for (int i = 0; i < 6; ++i) docs.push_back(fmt::format("short document number {}", i));
  return docs;
}

// One JSON object per document, the text between other fields; every third line puts `meta`
// first, one uses \u escapes for its non-ASCII characters.
std::string jsonl_of(const std::vector<std::string>& docs, const std::string& field = "text") {
  std::string out;
  for (size_t i = 0; i < docs.size(); ++i) {
    const std::string meta = fmt::format(
        R"("meta": {{"pile_set_name": "Books3", "i": {}, "x": [1, {{"y": null}}]}})", i);
    const std::string text = fmt::format("\"{}\": {}", field, json_string(docs[i]));
    out += i % 3 == 0 ? fmt::format("{{{}, {}}}\n", meta, text)
                      : fmt::format("{{{}, {}}}\n", text, meta);
  }
  return out;
}

struct Read {
  std::vector<Document> docs;
  std::vector<std::string> texts;  // copies: Document::text is a view
};

Read read_all(DocumentSource& src) {
  Read r;
  Document d;
  while (src.next(d)) {
    r.texts.emplace_back(d.text);
    r.docs.push_back(d);
  }
  return r;
}

ReaderOptions options(BadRecords policy = BadRecords::error, size_t block_bytes = 1 << 20) {
  ReaderOptions o;
  o.on_bad_record = policy;
  o.block_bytes = block_bytes;
  return o;
}

std::vector<int32_t> stream_of(const TokenStream& s) {
  std::vector<int32_t> v(static_cast<size_t>(s.size()));
  s.read(0, s.size(), v.data());
  return v;
}

TEST(ZstdStream, ConcatenatedAndSkippableFramesReadAsOneStream) {
  ScratchDir dir;
  std::string bytes;
  for (int i = 0; i < 20000; ++i) bytes += static_cast<char>('a' + i * 31 % 26);
  const std::string file =
      test::zstd_frame(bytes.substr(0, 7000)) + test::zstd_skippable_frame("ignored") +
      test::zstd_frame(bytes.substr(7000, 1)) + test::zstd_frame(bytes.substr(7001));
  test::write_bytes(dir / "a.zst", file);
  for (size_t block : {1, 3, 4096, 1 << 20}) {
    ZstdFileReader r(dir / "a.zst");
    std::string got;
    std::vector<char> buf(block);
    while (size_t n = r.read(buf.data(), buf.size())) got.append(buf.data(), n);
    EXPECT_EQ(got, bytes) << "block " << block;
    EXPECT_FALSE(r.problem().has_value());
    EXPECT_EQ(r.decompressed_bytes(), static_cast<int64_t>(bytes.size()));
  }
}

TEST(ZstdStream, TruncatedAndCorruptStreamsAreReported) {
  ScratchDir dir;
  const std::string first = test::zstd_frame(std::string(5000, 'x'));
  const std::string second = test::zstd_frame(std::string(3000, 'y') + "tail", true);
  test::write_bytes(dir / "cut.zst", first + second.substr(0, second.size() - 5));
  ZstdFileReader cut(dir / "cut.zst");
  std::string got;
  char buf[512];
  while (size_t n = cut.read(buf, sizeof(buf))) got.append(buf, n);
  ASSERT_TRUE(cut.problem().has_value());
  EXPECT_EQ(cut.problem()->reason, kTruncatedZstd);
  EXPECT_NE(cut.problem()->message.find(dir / "cut.zst"), std::string::npos);
  EXPECT_EQ(got.substr(0, 5000), std::string(5000, 'x'));  // the complete frame arrives whole
  EXPECT_EQ(cut.read(buf, sizeof(buf)), 0u);               // and nothing after the end

  std::string bad = first + second;
  bad[first.size()] ^= 0x55;  // the second frame's magic
  test::write_bytes(dir / "bad.zst", bad);
  ZstdFileReader corrupt(dir / "bad.zst");
  got.clear();
  while (size_t n = corrupt.read(buf, sizeof(buf))) got.append(buf, n);
  ASSERT_TRUE(corrupt.problem().has_value());
  EXPECT_EQ(corrupt.problem()->reason, kCorruptZstd);
  EXPECT_NE(corrupt.problem()->message.find(fmt::format("offset {}", first.size())),
            std::string::npos)
      << corrupt.problem()->message;
  EXPECT_EQ(got, std::string(5000, 'x'));

  test::write_bytes(dir / "empty.zst", "");
  ZstdFileReader empty(dir / "empty.zst");
  EXPECT_EQ(empty.read(buf, sizeof(buf)), 0u);
  EXPECT_FALSE(empty.problem().has_value());
}

TEST(LineReader, LinesSpanBlocksAndFramesAndSkippingMatchesReading) {
  ScratchDir dir;
  const std::string text = "first\n\nthird line, longer than a block\r\n" + std::string(300, 'z') +
                           "\nlast without newline";
  const std::vector<std::string> want = {"first", "", "third line, longer than a block\r",
                                         std::string(300, 'z'), "last without newline"};
  test::write_bytes(dir / "plain.txt", text);
  test::write_bytes(dir / "packed.zst", test::zstd_frames(text, {3, 4, 20, 100}));
  for (const auto& [file, compressed] :
       std::vector<std::pair<std::string, bool>>{{"plain.txt", false}, {"packed.zst", true}}) {
    for (size_t block : {1, 5, 64, 1 << 20}) {
      LineReader lines(dir / file, compressed, block);
      LineReader skipper(dir / file, compressed, block);
      LineReader::Line line, skipped;
      std::vector<std::string> got;
      int64_t bytes = 0;
      while (lines.next(line)) {
        got.emplace_back(line.text);
        ASSERT_TRUE(skipper.skip(skipped));
        EXPECT_EQ(skipped.number, line.number);
        EXPECT_EQ(skipped.bytes, line.bytes);
        EXPECT_EQ(line.number, static_cast<int64_t>(got.size()));
        EXPECT_FALSE(line.broken);
        bytes += line.bytes;
      }
      EXPECT_FALSE(skipper.skip(skipped));
      EXPECT_EQ(got, want) << file << " block " << block;
      EXPECT_EQ(bytes, static_cast<int64_t>(text.size()));
    }
  }
  // A final newline ends the last line; it does not start an empty one.
  test::write_bytes(dir / "nl.txt", "a\nb\n");
  LineReader r(dir / "nl.txt", false);
  LineReader::Line line;
  int n = 0;
  while (r.next(line)) ++n;
  EXPECT_EQ(n, 2);
}

TEST(LineReader, ABrokenStreamEndsWithOneBrokenLine) {
  ScratchDir dir;
  const std::string text = "one\ntwo\nthree is cut";
  const std::string second = test::zstd_frame(text.substr(8));
  // Cut inside the second frame: "one\ntwo\n" survives whole.
  test::write_bytes(dir / "cut.zst",
                    test::zstd_frame(text.substr(0, 8)) + second.substr(0, second.size() - 3));
  LineReader r(dir / "cut.zst", true, 2);
  LineReader::Line line;
  std::vector<std::string> got;
  while (r.next(line)) {
    got.emplace_back(line.text);
    EXPECT_EQ(line.broken, got.size() == 3);
  }
  EXPECT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], "one");
  EXPECT_EQ(got[1], "two");
  ASSERT_TRUE(r.problem().has_value());
  EXPECT_EQ(r.problem()->reason, kTruncatedZstd);
  EXPECT_FALSE(r.next(line));
}

TEST(JsonLines, ZstdCorpusWithSeveralFramesDecodesToExactlyTheDocuments) {
  ScratchDir dir;
  const auto docs = sample_documents();
  const std::string jsonl = jsonl_of(docs);
  // Frames cut inside lines (the first cut splits line 2 in its middle), inside a multi-byte
  // character of line 2, and at a line end.
  const size_t line2 = jsonl.find('\n') + 1;
  const size_t in_char = jsonl.find("\xe2\x9c\x93") + 1;
  const size_t line_end = jsonl.find('\n', line2) + 1;
  std::vector<size_t> cuts = {line2 + 10, in_char, line_end, jsonl.size() - 100};
  std::sort(cuts.begin(), cuts.end());
  test::write_bytes(dir / "corpus.jsonl.zst", test::zstd_frames(jsonl, cuts));
  test::write_bytes(dir / "corpus.jsonl", jsonl);
  for (const char* name : {"corpus.jsonl.zst", "corpus.jsonl"}) {
    for (size_t block : {size_t{7}, size_t{256}, size_t{1} << 20}) {
      auto src = open_documents({dir / name}, "auto", options(BadRecords::error, block));
      EXPECT_EQ(src->document_count(), static_cast<int64_t>(docs.size()));
      EXPECT_EQ(src->total_bytes(), static_cast<int64_t>(jsonl.size()));
      const Read r = read_all(*src);
      EXPECT_EQ(r.texts, docs) << name << " block " << block;
      int64_t bytes = 0;
      for (size_t i = 0; i < r.docs.size(); ++i) {
        EXPECT_EQ(r.docs[i].record, static_cast<int64_t>(i));
        EXPECT_FALSE(r.docs[i].skipped);
        EXPECT_EQ(r.docs[i].origin, fmt::format("{}:{}", dir / name, i + 1));
        bytes += r.docs[i].input_bytes;
      }
      EXPECT_EQ(bytes, static_cast<int64_t>(jsonl.size()));
    }
  }
}

TEST(JsonLines, EscapesAndAnotherTextFieldAreHonoured) {
  ScratchDir dir;
  // \u escapes (one a surrogate pair), CRLF line ends, the text in "content".
  test::write_bytes(dir / "a.jsonl",
                    "{\"content\": \"caf\\u00e9 \\ud83c\\udf89 \\\"q\\\" \\/\", \"text\": 5}\r\n"
                    "{\"content\": \"two\"}\r\n");
  ReaderOptions o = options();
  o.text_field = "content";
  auto src = open_documents({dir / "a.jsonl"}, "jsonl", o);
  const Read r = read_all(*src);
  EXPECT_EQ(r.texts, (std::vector<std::string>{"caf\xc3\xa9 \xf0\x9f\x8e\x89 \"q\" /", "two"}));
}

TEST(JsonLines, PrepareGivesTheSameTokensAsPlainTextFiles) {
  ScratchDir dir;
  // 25 documents: split by document; 6: split by the tail of each.
  for (int count : {25, 6}) {
    std::vector<std::string> docs;
    for (int i = 0; i < count; ++i) {
      docs.push_back(fmt::format("document {} \xc3\xa9\xe2\x9c\x93 {}", i,
                                 std::string(static_cast<size_t>(i * 13 % 50), 'a' + i % 26)));
      test::write_bytes(dir / fmt::format("txt{}/doc_{:02d}.txt", count, i), docs.back());
    }
    const std::string jsonl = jsonl_of(docs);
    test::write_bytes(dir / fmt::format("c{}.jsonl.zst", count),
                      test::zstd_frames(jsonl, {jsonl.size() / 3, jsonl.size() / 2 + 1}));
    PrepareOptions o;
    o.val_fraction = 0.1;
    o.show_progress = false;
    o.inputs = {dir / fmt::format("txt{}", count)};
    o.out_dir = dir / fmt::format("from_text{}", count);
    const PrepareSummary from_text = prepare_dataset(o);
    o.inputs = {dir / fmt::format("c{}.jsonl.zst", count)};
    o.out_dir = dir / fmt::format("from_jsonl{}", count);
    const PrepareSummary from_jsonl = prepare_dataset(o);
    EXPECT_EQ(from_jsonl.documents, count);
    EXPECT_EQ(from_jsonl.split_by_document, count >= 20);
    EXPECT_EQ(from_jsonl.train_tokens, from_text.train_tokens);
    EXPECT_EQ(from_jsonl.validation_tokens, from_text.validation_tokens);
    EXPECT_EQ(from_jsonl.skipped_records, 0);
    TokenDataset a(dir / fmt::format("from_text{}", count));
    TokenDataset b(dir / fmt::format("from_jsonl{}", count));
    EXPECT_EQ(stream_of(a.train()), stream_of(b.train()));
    EXPECT_EQ(stream_of(a.validation()), stream_of(b.validation()));
    // And the tokens are the documents' bytes, each closed by the end of document.
    if (count >= 20) {
      std::vector<int32_t> all = stream_of(b.train());
      const auto val = stream_of(b.validation());
      all.insert(all.end(), val.begin(), val.end());
      int64_t bytes = 0;
      for (const auto& d : docs) bytes += static_cast<int64_t>(d.size()) + 1;
      EXPECT_EQ(static_cast<int64_t>(all.size()), bytes);
      std::vector<int32_t> first;
      for (unsigned char c : docs[0]) first.push_back(c);
      first.push_back(kEod);
      EXPECT_EQ(std::vector<int32_t>(all.begin(), all.begin() + first.size()), first);
    }
  }
}

// One line of each bad kind, between good ones. {line text, reason}; reason "" for a good line.
std::vector<std::pair<std::string, std::string>> mixed_lines() {
  return {
      {R"({"text": "good zero"})", ""},
      {R"({"text": "unterminated)", kMalformedJson},
      {R"({"text": "good two", "meta": {}})", ""},
      {"", kEmptyLine},
      {R"({"meta": {"text": "nested does not count"}})", kMissingTextField},
      {R"({"text": null})", kTextNotString},
      {"{\"text\": \"bad \xff byte\"}", kInvalidUtf8},
      {R"(["text", "an array"])", kNotAnObject},
      {R"({"text": "good eight"})", ""},
      {R"({"text": "lone \ud800 surrogate"})", kMalformedJson},
      {R"({"text": "good ten"} trailing)", kMalformedJson},
      {"   ", kEmptyLine},
      {R"({"text": "good twelve"})", ""},
  };
}

TEST(JsonLines, EachBadRecordIsAnErrorNamingFileAndLine) {
  ScratchDir dir;
  const std::map<std::string, std::string> detail = {
      {kMalformedJson, "malformed JSON"},         {kEmptyLine, "empty line"},
      {kMissingTextField, "no field \"text\""},   {kTextNotString, "holds null, not a string"},
      {kInvalidUtf8, "invalid UTF-8 at byte 14"}, {kNotAnObject, "holds an array"},
  };
  int n = 0;
  for (const auto& [line, reason] : mixed_lines()) {
    if (reason.empty()) continue;
    const std::string path = dir / fmt::format("bad{}.jsonl", n++);
    test::write_bytes(path, "{\"text\": \"fine\"}\n" + line + "\n{\"text\": \"after\"}\n");
    auto src = open_documents({path}, "auto", options());
    EXPECT_EQ(src->document_count(), 3);
    Document d;
    ASSERT_TRUE(src->next(d));
    EXPECT_EQ(d.text, "fine");
    expect_error([&] { src->next(d); },
                 {fmt::format("'{}' line 2", path), detail.at(reason), "--on-bad-record skip"});
  }
}

TEST(JsonLines, SkippedRecordsKeepTheirNumbersAndAreCountedByReason) {
  ScratchDir dir;
  const auto lines = mixed_lines();
  std::string content;
  for (const auto& l : lines) content += l.first + "\n";
  test::write_bytes(dir / "mixed.jsonl", content);
  test::write_bytes(dir / "mixed2.jsonl.zst", test::zstd_frames(content, {content.size() / 2}));
  for (const char* name : {"mixed.jsonl", "mixed2.jsonl.zst"}) {
    auto src = open_documents({dir / name}, "auto", options(BadRecords::skip, 16));
    ASSERT_EQ(src->document_count(), static_cast<int64_t>(lines.size()));
    const Read r = read_all(*src);
    ASSERT_EQ(r.docs.size(), lines.size());
    for (size_t i = 0; i < lines.size(); ++i) {
      const Document& d = r.docs[i];
      EXPECT_EQ(d.record, static_cast<int64_t>(i));
      EXPECT_EQ(d.skipped, !lines[i].second.empty()) << "line " << i + 1;
      EXPECT_EQ(d.reason, lines[i].second) << "line " << i + 1;
      if (d.skipped) {
        EXPECT_TRUE(r.texts[i].empty());
        EXPECT_NE(d.problem.find(fmt::format("'{}' line {}", dir / name, i + 1)), std::string::npos)
            << d.problem;
      }
    }
    EXPECT_EQ(r.texts[0], "good zero");
    EXPECT_EQ(r.texts[12], "good twelve");
  }

  // prepare tallies them and keeps the good records' places in the split rule.
  PrepareOptions o;
  o.inputs = {dir / "mixed.jsonl"};
  o.out_dir = dir / "ds";
  o.val_fraction = 0.0;
  o.show_progress = false;
  expect_error([&] { prepare_dataset(o); }, {"mixed.jsonl' line 2", "malformed JSON"});
  o.reader.on_bad_record = BadRecords::skip;
  const PrepareSummary s = prepare_dataset(o);
  EXPECT_EQ(s.documents, 13);
  EXPECT_EQ(s.skipped_records, 9);
  EXPECT_EQ(s.train_documents, 4);
  const std::map<std::string, int64_t> want = {{kMalformedJson, 3},    {kEmptyLine, 2},
                                               {kMissingTextField, 1}, {kTextNotString, 1},
                                               {kInvalidUtf8, 1},      {kNotAnObject, 1}};
  std::map<std::string, int64_t> got;
  for (const auto& [reason, tally] : s.bad_records) got[reason] = tally.count;
  EXPECT_EQ(got, want);
  EXPECT_NE(s.bad_records.at(kMalformedJson).first.find("line 2"), std::string::npos);
  const std::string text = format_prepare_summary(s);
  for (const auto& [reason, count] : want) {
    EXPECT_NE(text.find(fmt::format("{:<24}: {}, first:", reason, count)), std::string::npos)
        << text;
  }
  EXPECT_NE(text.find("9 bad records"), std::string::npos) << text;
}

TEST(JsonLines, ABadRecordDoesNotMoveOthersBetweenSplits) {
  ScratchDir dir;
  // 30 records, 3 of them validation: records ⌊(2k+1)·30/6⌋ = 5, 15, 25. Record 5 is bad.
  std::string content;
  std::vector<int32_t> train, val;
  for (int i = 0; i < 30; ++i) {
    if (i == 5 || i == 11) {
      content += "{\"text\": 1}\n";
      continue;
    }
    const std::string t = fmt::format("doc {}", i);
    content += fmt::format("{{\"text\": \"{}\"}}\n", t);
    auto& to = (i == 15 || i == 25) ? val : train;
    for (unsigned char c : t) to.push_back(c);
    to.push_back(kEod);
  }
  test::write_bytes(dir / "c.jsonl", content);
  PrepareOptions o;
  o.inputs = {dir / "c.jsonl"};
  o.out_dir = dir / "ds";
  o.val_fraction = 0.1;
  o.show_progress = false;
  o.reader.on_bad_record = BadRecords::skip;
  const PrepareSummary s = prepare_dataset(o);
  EXPECT_TRUE(s.split_by_document);
  EXPECT_EQ(s.validation_documents, 2);
  EXPECT_EQ(s.bad_records.at(kTextNotString).count, 2);
  TokenDataset ds(dir / "ds");
  EXPECT_EQ(stream_of(ds.train()), train);
  EXPECT_EQ(stream_of(ds.validation()), val);
}

TEST(JsonLines, TruncatedZstdStopsThatFileAndCountsTheLoss) {
  ScratchDir dir;
  const std::string lines = "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"cut here\"}\n";
  const std::string tail = test::zstd_frame(lines.substr(28));
  test::write_bytes(dir / "1.jsonl.zst",
                    test::zstd_frame(lines.substr(0, 28)) + tail.substr(0, tail.size() - 4));
  test::write_bytes(dir / "2.jsonl", "{\"text\": \"next file\"}\n");
  expect_error(
      [&] {
        open_documents({dir / "1.jsonl.zst", dir / "2.jsonl"}, "auto", options());
      },
      {dir / "1.jsonl.zst", "truncated", "line 3 is incomplete", "--on-bad-record"});
  auto src =
      open_documents({dir / "1.jsonl.zst", dir / "2.jsonl"}, "auto", options(BadRecords::skip, 8));
  EXPECT_EQ(src->document_count(), 4);
  const Read r = read_all(*src);
  ASSERT_EQ(r.docs.size(), 4u);
  EXPECT_EQ(r.texts[0], "a");
  EXPECT_EQ(r.texts[1], "b");
  EXPECT_TRUE(r.docs[2].skipped);
  EXPECT_EQ(r.docs[2].reason, kTruncatedZstd);
  EXPECT_NE(r.docs[2].problem.find("line 3"), std::string::npos) << r.docs[2].problem;
  EXPECT_EQ(r.texts[3], "next file");
  EXPECT_EQ(r.docs[3].record, 3);

  // Cut exactly at a line end: the loss is still one (empty) broken record, never silent.
  test::write_bytes(dir / "3.jsonl.zst",
                    test::zstd_frame(lines.substr(0, 28)) + tail.substr(0, tail.size() / 2));
  auto src3 = open_documents({dir / "3.jsonl.zst"}, "auto", options(BadRecords::skip));
  const Read r3 = read_all(*src3);
  ASSERT_EQ(r3.docs.size(), 3u);
  EXPECT_EQ(r3.docs[2].reason, kTruncatedZstd);

  // A corrupt frame is reported the same way, as corrupt.
  std::string bad = test::zstd_frame(lines.substr(0, 28)) + tail;
  bad[bad.size() - tail.size()] ^= 0x7f;
  test::write_bytes(dir / "4.jsonl.zst", bad);
  expect_error([&] { open_documents({dir / "4.jsonl.zst"}, "auto", options()); },
               {dir / "4.jsonl.zst", "corrupt zstd data"});
  auto src4 = open_documents({dir / "4.jsonl.zst"}, "auto", options(BadRecords::skip));
  const Read r4 = read_all(*src4);
  ASSERT_EQ(r4.docs.size(), 3u);
  EXPECT_EQ(r4.docs[2].reason, kCorruptZstd);
}

TEST(DocumentSource, FormatsByNameAndRecordsNumberedAcrossInputs) {
  ScratchDir dir;
  test::write_bytes(dir / "in/a.txt", "plain A");
  test::write_bytes(dir / "in/b.jsonl", "{\"text\": \"b1\"}\n{\"text\": \"b2\"}\n");
  test::write_bytes(dir / "in/c.json", "{\"text\": \"c1\"}");
  test::write_bytes(dir / "in/d.txt.zst", test::zstd_frame("compressed D"));
  test::write_bytes(dir / "in/e.jsonl.zst", test::zstd_frame("{\"text\": \"e1\"}\n"));
  test::write_bytes(dir / "in/f", "no extension");
  auto src = open_documents({dir / "in"}, "auto", options());
  EXPECT_EQ(src->document_count(), 7);
  const Read r = read_all(*src);
  EXPECT_EQ(r.texts, (std::vector<std::string>{"plain A", "b1", "b2", "c1", "compressed D", "e1",
                                               "no extension"}));
  for (size_t i = 0; i < r.docs.size(); ++i) EXPECT_EQ(r.docs[i].record, static_cast<int64_t>(i));
  EXPECT_NE(src->describe().find("JSON lines"), std::string::npos) << src->describe();

  // Explicit formats apply to every file.
  EXPECT_EQ(read_all(*open_documents({dir / "in/b.jsonl"}, "text")).texts,
            (std::vector<std::string>{"{\"text\": \"b1\"}\n{\"text\": \"b2\"}\n"}));
  test::write_bytes(dir / "x.zst", test::zstd_frame("{\"text\": \"x\"}\n"));
  EXPECT_EQ(read_all(*open_documents({dir / "x.zst"}, "jsonl")).texts,
            std::vector<std::string>{"x"});
  expect_error([&] { open_documents({dir / "x.zst"}, "auto"); },
               {dir / "x.zst", "--format jsonl", "--format text"});
  test::write_bytes(dir / "m.idx", "MMIDIDX");
  expect_error([&] { open_documents({dir / "m.idx"}, "auto"); }, {dir / "m.idx", "data.path"});
  expect_error([&] { open_documents({dir / "in"}, "megatron"); }, {"megatron", "dape train"});
  expect_error([&] { open_documents({dir / "in"}, "csv"); }, {"csv", "supported: auto, text"});
}

TEST(DocumentSource, SkipLandsWhereReadingWould) {
  ScratchDir dir;
  test::write_bytes(dir / "0.txt", "text zero");
  std::string lines;
  for (int i = 0; i < 9; ++i) {
    lines += i == 4 ? std::string("not json\n") : fmt::format("{{\"text\": \"line {}\"}}\n", i);
  }
  test::write_bytes(dir / "1.jsonl", lines);
  test::write_bytes(dir / "2.jsonl.zst", test::zstd_frames(lines, {17, 40}));
  test::write_bytes(dir / "3.txt", "text three");
  // Cut in its last frame: 60 bytes decode, three whole lines of 19 bytes and a broken one.
  const std::string cut = test::zstd_frames(lines, {30, 60});
  test::write_bytes(dir / "4.jsonl.zst", cut.substr(0, cut.size() - 6));
  const std::vector<std::string> inputs = {dir / "0.txt", dir / "1.jsonl", dir / "2.jsonl.zst",
                                           dir / "3.txt", dir / "4.jsonl.zst"};
  auto whole = open_documents(inputs, "auto", options(BadRecords::skip, 8));
  const Read all = read_all(*whole);
  const auto count = static_cast<int64_t>(all.docs.size());
  EXPECT_EQ(count, whole->document_count());
  EXPECT_EQ(count, 1 + 9 + 9 + 1 + 4);
  for (int64_t n = 0; n <= count; ++n) {
    auto src = open_documents(inputs, "auto", options(BadRecords::skip, 8));
    src->skip(n);
    const Read rest = read_all(*src);
    ASSERT_EQ(static_cast<int64_t>(rest.docs.size()), count - n) << "skip " << n;
    for (size_t i = 0; i < rest.docs.size(); ++i) {
      const size_t j = static_cast<size_t>(n) + i;
      EXPECT_EQ(rest.docs[i].record, all.docs[j].record);
      EXPECT_EQ(rest.texts[i], all.texts[j]);
      EXPECT_EQ(rest.docs[i].skipped, all.docs[j].skipped);
    }
  }
  // Interleaved: skip 3, read 1, skip 7, read 1, ... through every file boundary.
  auto src = open_documents(inputs, "auto", options(BadRecords::skip, 8));
  Document d;
  int64_t at = 0;
  for (int64_t step : {3, 7, 0, 5, 2, 1}) {
    src->skip(step);
    at += step;
    ASSERT_TRUE(src->next(d));
    EXPECT_EQ(d.record, at);
    EXPECT_EQ(std::string(d.text), all.texts[static_cast<size_t>(at)]);
    ++at;
  }
}

}  // namespace
}  // namespace dape::data
