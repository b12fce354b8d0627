#include "core/data/jsonl_documents.h"

#include <simdjson.h>

#include <filesystem>

#include "common/check.h"
#include "common/progress.h"
#include "core/data/line_reader.h"

namespace dape::data {

namespace {

const char* json_type_name(simdjson::dom::element_type t) {
  using T = simdjson::dom::element_type;
  switch (t) {
    case T::ARRAY:
      return "an array";
    case T::OBJECT:
      return "an object";
    case T::INT64:
    case T::UINT64:
    case T::DOUBLE:
      return "a number";
    case T::STRING:
      return "a string";
    case T::BOOL:
      return "a boolean";
    case T::NULL_VALUE:
      return "null";
  }
  return "an unknown type";
}

// The byte offset of the first invalid UTF-8 sequence in `s`, or s.size() when it is valid.
size_t first_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    size_t len;
    unsigned cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      len = 2, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4, cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return n;
}

}  // namespace

// simdjson's DOM parser and the padded copy of the line it needs, kept out of the header.
class JsonLinesDocuments::Parser {
 public:
  // Parses `line` and finds the text field. On success returns true with `text` (valid until
  // the next parse); else false with a reason (jsonl_documents.h) and what is wrong.
  bool parse(std::string_view line, const std::string& field, std::string_view& text,
             const char*& reason, std::string& what) {
    padded_.resize(line.size() + simdjson::SIMDJSON_PADDING);
    std::memcpy(padded_.data(), line.data(), line.size());
    simdjson::dom::element root;
    const auto err = parser_.parse(padded_.data(), line.size(), false).get(root);
    if (err == simdjson::EMPTY) {
      reason = kEmptyLine;
      what = "empty line (no JSON object)";
      return false;
    }
    if (err == simdjson::UTF8_ERROR) {
      reason = kInvalidUtf8;
      what = fmt::format("invalid UTF-8 at byte {} of the line", first_invalid_utf8(line));
      return false;
    }
    if (err) {
      reason = kMalformedJson;
      what = fmt::format("malformed JSON: {}{}", simdjson::error_message(err),
                         err == simdjson::STRING_ERROR
                             ? " (a bad escape, or an unpaired UTF-16 surrogate like \\ud800)"
                             : "");
      return false;
    }
    if (root.type() != simdjson::dom::element_type::OBJECT) {
      reason = kNotAnObject;
      what = fmt::format("the line holds {}, not a JSON object", json_type_name(root.type()));
      return false;
    }
    simdjson::dom::element value;
    if (root.get_object().at_key(field).get(value)) {
      reason = kMissingTextField;
      what =
          fmt::format("the object has no field \"{}\" (the text field; see --text-field)", field);
      return false;
    }
    if (value.get_string().get(text)) {
      reason = kTextNotString;
      what =
          fmt::format("field \"{}\" holds {}, not a string", field, json_type_name(value.type()));
      return false;
    }
    return true;
  }

 private:
  simdjson::dom::parser parser_;
  std::vector<char> padded_;
};

JsonLinesDocuments::JsonLinesDocuments(std::vector<std::string> files, const ReaderOptions& options)
    : options_(options), parser_(std::make_unique<Parser>()) {
  int64_t compressed_total = 0;
  for (auto& path : files) {
    File f;
    f.path = std::move(path);
    f.compressed = has_zstd_extension(f.path);
    if (f.compressed) {
      std::error_code ec;
      compressed_total += static_cast<int64_t>(std::filesystem::file_size(f.path, ec));
    }
    files_.push_back(std::move(f));
  }
  std::unique_ptr<ProgressBar> bar;
  if (options_.show_progress && compressed_total > 0)
    bar = std::make_unique<ProgressBar>("count lines", compressed_total, "B");
  int64_t compressed_done = 0;
  for (File& f : files_) {
    LineReader reader(f.path, f.compressed, options_.block_bytes);
    LineReader::Line line;
    while (reader.skip(line)) {
      ++f.records;
      f.bytes += line.bytes;
    }
    if (reader.problem() && options_.on_bad_record == ReaderOptions::BadRecords::error) {
      fail("{} (line {} is incomplete){}", reader.problem()->message, line.number, kSkipHint);
    }
    records_ += f.records;
    total_bytes_ += f.bytes;
    if (bar && f.compressed) {
      std::error_code ec;
      compressed_done += static_cast<int64_t>(std::filesystem::file_size(f.path, ec));
      bar->update(compressed_done, fmt::format("{} lines", records_));
    }
  }
  if (bar) bar->finish(fmt::format("{} lines", records_));
}

JsonLinesDocuments::~JsonLinesDocuments() = default;

void JsonLinesDocuments::close_file() {
  const File& f = files_[file_];
  LineReader::Line extra;
  if (reader_ && reader_->skip(extra)) {
    fail("'{}' changed while it was read: it had {} lines when counted, now more", f.path,
         f.records);
  }
  reader_.reset();
  file_records_read_ = 0;
  ++file_;
}

bool JsonLinesDocuments::read_line(LineReader::Line& line, bool keep) {
  const File& f = files_[file_];
  if (!reader_) reader_ = std::make_unique<LineReader>(f.path, f.compressed, options_.block_bytes);
  if (!(keep ? reader_->next(line) : reader_->skip(line))) {
    fail("'{}' changed while it was read: it had {} lines when counted, now {}", f.path, f.records,
         file_records_read_);
  }
  ++file_records_read_;
  ++next_record_;
  return true;
}

bool JsonLinesDocuments::next(Document& doc) {
  while (file_ < files_.size() && file_records_read_ == files_[file_].records) close_file();
  if (file_ == files_.size()) return false;
  const File& f = files_[file_];
  LineReader::Line line;
  read_line(line, /*keep=*/true);
  doc = Document{};
  doc.origin = fmt::format("{}:{}", f.path, line.number);
  doc.record = next_record_ - 1;
  doc.input_bytes = line.bytes;
  const char* reason = nullptr;
  std::string what;
  if (line.broken) {
    reason = reader_->problem()->reason.c_str();
    what =
        fmt::format("{}; line {} ({} bytes decoded) is incomplete and nothing after it can be read",
                    reader_->problem()->message, line.number, line.text.size());
  } else if (parser_->parse(line.text, options_.text_field, doc.text, reason, what)) {
    return true;
  } else {
    what = fmt::format("'{}' line {}: {}", f.path, line.number, what);
  }
  if (options_.on_bad_record == ReaderOptions::BadRecords::error) fail("{}{}", what, kSkipHint);
  doc.text = {};
  doc.skipped = true;
  doc.reason = reason;
  doc.problem = std::move(what);
  return true;
}

void JsonLinesDocuments::skip(int64_t n) {
  DAPE_CHECK(n >= 0 && n <= records_ - next_record_, "skip of {} records with {} left", n,
             records_ - next_record_);
  while (n > 0) {
    const int64_t left = files_[file_].records - file_records_read_;
    if (left == 0) {
      close_file();
    } else if (!reader_ && n >= left) {
      // The whole file: its count is known, nothing needs reading.
      n -= left;
      next_record_ += left;
      ++file_;
    } else {
      LineReader::Line line;
      for (const int64_t stop = n - std::min(n, left); n > stop; --n) read_line(line, false);
    }
  }
}

std::string JsonLinesDocuments::describe() const {
  int64_t compressed = 0;
  for (const auto& f : files_) compressed += f.compressed ? 1 : 0;
  return fmt::format(
      "{} file{} of JSON lines ({}{} line{})", files_.size(), files_.size() == 1 ? "" : "s",
      compressed ? fmt::format("{} zstd, ", compressed) : "", records_, records_ == 1 ? "" : "s");
}

}  // namespace dape::data
