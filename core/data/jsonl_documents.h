/*
 * JSON lines documents, the Pile's format: every line of every file is one JSON object holding
 * one document's text in a configurable field ("text" by default); other fields ("meta", …) are
 * ignored. Files ending in .zst (how the Pile and Books3 ship, `*.jsonl.zst`) are decompressed
 * as a stream (line_reader.h), so neither the compressed nor the decompressed file is ever held
 * whole.
 *
 * Opening makes a counting pass: every file's lines are counted (a compressed file is
 * decompressed once for it; line ends are found without parsing JSON), which gives the record
 * count the split rule needs, the decompressed size for progress, and an early stop, before any
 * output is written, on a truncated or corrupt compressed file under BadRecords::error. Reading
 * then parses each line with simdjson (a full parse, so a malformed line is caught even where
 * the text field is not).
 *
 * Bad records, each reported with the file and the 1-based line: an empty line, malformed JSON
 * (including a bad escape or an unpaired UTF-16 surrogate), a value that is not an object, an
 * object without the text field, a text field that is not a string, invalid UTF-8. A truncated or
 * corrupt .zst stream cannot be skipped past: the bytes after its last complete line become one
 * bad record, and the file's remaining content is lost (the message says after how many bytes).
 * Under BadRecords::skip each of these is a skipped record with its reason; under error, the
 * first one is a dape::Error.
 */
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/data/document_source.h"
#include "core/data/line_reader.h"

namespace dape::data {

// The reasons (Document::reason) this reader gives.
inline constexpr const char* kEmptyLine = "empty line";
inline constexpr const char* kMalformedJson = "malformed JSON";
inline constexpr const char* kNotAnObject = "not a JSON object";
inline constexpr const char* kMissingTextField = "missing text field";
inline constexpr const char* kTextNotString = "text field not a string";
inline constexpr const char* kInvalidUtf8 = "invalid UTF-8";

class JsonLinesDocuments final : public DocumentSource {
 public:
  // Counts the records of `files` (see above). Throws dape::Error naming a file that cannot be
  // read, or under BadRecords::error one whose compressed stream is truncated or corrupt.
  JsonLinesDocuments(std::vector<std::string> files, const ReaderOptions& options);
  ~JsonLinesDocuments() override;

  int64_t document_count() const override { return records_; }
  int64_t total_bytes() const override { return total_bytes_; }
  bool next(Document& doc) override;
  void skip(int64_t n) override;
  std::string describe() const override;

 private:
  struct File {
    std::string path;
    bool compressed = false;
    int64_t records = 0;
    int64_t bytes = 0;
  };
  class Parser;

  // The current file's next line (its text only when `keep`), opening the file if needed.
  // Throws dape::Error when the file has fewer lines than were counted.
  bool read_line(LineReader::Line& line, bool keep);
  // Done with the current file (checks it has no more lines than were counted); on to the next.
  void close_file();

  std::vector<File> files_;
  ReaderOptions options_;
  int64_t records_ = 0, total_bytes_ = 0;
  // Where reading stands: the file, its reader, the records read from it, the next record.
  size_t file_ = 0;
  std::unique_ptr<LineReader> reader_;
  int64_t file_records_read_ = 0;
  int64_t next_record_ = 0;
  std::unique_ptr<Parser> parser_;
};

}  // namespace dape::data
