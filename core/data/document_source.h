/*
 * Documents: where `prepare` gets its text from.
 *
 * A DocumentSource yields the records of its inputs one at a time, in a fixed order, as views
 * that stay valid until the next call; the caller tokenizes each and moves on, so memory holds
 * one document, not the corpus. A record is what the format calls one document: a whole file of
 * plain text, one line of JSON lines. Records are numbered 0, 1, … over all inputs in input
 * order, and their number is known before the first one is read (a counting pass at open),
 * because the train/validation rule and the split of the work over ranks depend on it.
 *
 * Bad records (a malformed JSON line, a missing text field, invalid UTF-8, a truncated zstd
 * stream) either stop the reading with a dape::Error naming the file and the line or byte offset
 * (BadRecords::error, the default), or come back as records marked `skipped`, with the kind of
 * problem and where it is (BadRecords::skip), for the caller to count. A skipped record keeps its
 * number, so the records after it keep theirs: the split rule and the division of the work do
 * not shift when some records are bad. Nothing is dropped silently.
 *
 * Formats (one small class each): plain text (text_documents.h), JSON lines, plain or .zst
 * (jsonl_documents.h). Megatron .bin/.idx data is already tokenized and is read directly by
 * training (megatron_dataset.h), not through here.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dape::data {

struct Document {
  // The document's bytes; valid until the next call to DocumentSource::next. Empty when skipped.
  std::string_view text;
  // Where it came from, for messages: the file, and ":LINE" (1-based) for a line of a file.
  std::string origin;
  // 0-based over all records of all inputs, in input order.
  int64_t record = 0;
  // This record's share of DocumentSource::total_bytes() (for progress).
  int64_t input_bytes = 0;
  // A bad record passed over under BadRecords::skip: `reason` is the kind of problem (a short,
  // fixed phrase to tally by, e.g. "malformed JSON"), `problem` says what and where.
  bool skipped = false;
  std::string reason;
  std::string problem;
};

struct ReaderOptions {
  // JSON lines: the field of each object that holds the text; other fields are ignored.
  std::string text_field = "text";
  enum class BadRecords { error, skip };
  BadRecords on_bad_record = BadRecords::error;
  // Show a progress bar during the counting pass over compressed inputs.
  bool show_progress = false;
  // Decompressed bytes read at a time (and the starting size of a line buffer).
  size_t block_bytes = size_t{1} << 20;
};

class DocumentSource {
 public:
  virtual ~DocumentSource() = default;
  // The number of records, bad ones included.
  virtual int64_t document_count() const = 0;
  // Total input bytes (decompressed, where the format needs a decompressing count anyway), for
  // progress and rates.
  virtual int64_t total_bytes() const = 0;
  // The next record, or false at the end. Throws dape::Error on a bad record under
  // BadRecords::error.
  virtual bool next(Document& doc) = 0;
  // Passes over the next `n` records without parsing them (JSON lines: finds line ends only).
  // Whether they are bad is not looked at. Skipping past the last record is an internal error.
  virtual void skip(int64_t n) = 0;
  // One line on what is read, e.g. "3 files of JSON lines (3 zstd), 1 file of text".
  virtual std::string describe() const = 0;
};

// Opens `inputs` (files or directories, walked as text_documents.h says) as `format`:
//   "text"  every file is one document (a .zst file is decompressed first);
//   "jsonl" every line of every file is one document, a JSON object with the text in
//           options.text_field ("x.zst" files are decompressed);
//   "auto"  by each file's name: .jsonl, .json, .jsonl.zst, .json.zst are JSON lines; .txt.zst
//           is compressed text; any other .zst is refused (its name does not say what it
//           holds: pass --format); .idx/.bin (Megatron data) are refused with a pointer to
//           data.path; anything else is text.
// Counts the records before returning. Throws dape::Error naming the file on a missing input,
// an unknown format, or (under BadRecords::error) a compressed file that is truncated or corrupt.
std::unique_ptr<DocumentSource> open_documents(const std::vector<std::string>& inputs,
                                               const std::string& format,
                                               const ReaderOptions& options = {});

// The message that ends an error about a bad record, pointing at the skip policy.
inline constexpr const char* kSkipHint =
    " (--on-bad-record skip passes over bad records and counts them)";

}  // namespace dape::data
