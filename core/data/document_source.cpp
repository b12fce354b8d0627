#include "core/data/document_source.h"

#include "common/check.h"
#include "core/data/jsonl_documents.h"
#include "core/data/text_documents.h"

namespace dape::data {

namespace {

constexpr const char* kSupportedFormats = "supported: auto, text, jsonl";

enum class FileFormat { text, jsonl };

// The format a file's name says, for --format auto. Refuses names that say nothing usable.
FileFormat format_of_name(const std::string& path) {
  auto ends = [&](std::string_view suffix) { return path.ends_with(suffix); };
  if (ends(".jsonl") || ends(".jsonl.zst") || ends(".json") || ends(".json.zst")) {
    return FileFormat::jsonl;
  }
  if (ends(".txt.zst")) return FileFormat::text;
  if (ends(".zst")) {
    fail(
        "input '{}' is zstd-compressed, but its name does not say what it holds: pass --format "
        "jsonl (JSON lines, one document per line) or --format text (the whole file is one "
        "document)",
        path);
  }
  if (ends(".idx") || ends(".bin")) {
    fail(
        "input '{}' looks like Megatron/GPT-NeoX data (.bin/.idx), which is already tokenized: "
        "`dape train` reads it directly (data.path: the .idx file or the .bin/.idx prefix); "
        "prepare reads text and JSON lines. Pass --format text to read it as plain text anyway",
        path);
  }
  return FileFormat::text;
}

// Several sources read one after another as one: records are numbered on across them.
class ConcatenatedDocuments final : public DocumentSource {
 public:
  explicit ConcatenatedDocuments(std::vector<std::unique_ptr<DocumentSource>> parts)
      : parts_(std::move(parts)) {
    for (const auto& p : parts_) {
      count_ += p->document_count();
      bytes_ += p->total_bytes();
    }
  }
  int64_t document_count() const override { return count_; }
  int64_t total_bytes() const override { return bytes_; }

  bool next(Document& doc) override {
    while (part_ < parts_.size()) {
      if (parts_[part_]->next(doc)) {
        doc.record += base_;
        position_ = doc.record + 1;
        return true;
      }
      base_ += parts_[part_]->document_count();
      ++part_;
    }
    return false;
  }

  void skip(int64_t n) override {
    while (n > 0) {
      DAPE_CHECK(part_ < parts_.size(), "skip past the last record");
      DocumentSource& p = *parts_[part_];
      // Records of this part not yet read or skipped.
      const int64_t left = p.document_count() - (position_ - base_);
      const int64_t here = std::min(n, left);
      p.skip(here);
      position_ += here;
      n -= here;
      if (n > 0) {
        base_ += p.document_count();
        ++part_;
      }
    }
  }

  std::string describe() const override {
    std::string out;
    for (const auto& p : parts_) out += (out.empty() ? "" : ", ") + p->describe();
    return out;
  }

 private:
  std::vector<std::unique_ptr<DocumentSource>> parts_;
  int64_t count_ = 0, bytes_ = 0;
  size_t part_ = 0;
  // The first record number of parts_[part_], and the next record's number.
  int64_t base_ = 0, position_ = 0;
};

}  // namespace

std::unique_ptr<DocumentSource> open_documents(const std::vector<std::string>& inputs,
                                               const std::string& format,
                                               const ReaderOptions& options) {
  if (format != "auto" && format != "text" && format != "jsonl") {
    if (format == "megatron") {
      fail(
          "input format 'megatron' is not read by prepare: Megatron/GPT-NeoX .bin/.idx data is "
          "already tokenized and `dape train` reads it directly (data.path); {}",
          kSupportedFormats);
    }
    fail("unknown input format '{}'; {}", format, kSupportedFormats);
  }
  if (options.text_field.empty()) fail("the JSON text field name is empty (--text-field)");
  const std::vector<std::string> files = list_input_files(inputs);
  // Consecutive files of one format are read by one source, in input order.
  std::vector<std::pair<FileFormat, std::vector<std::string>>> runs;
  for (const auto& f : files) {
    const FileFormat ff = format == "auto"    ? format_of_name(f)
                          : format == "jsonl" ? FileFormat::jsonl
                                              : FileFormat::text;
    if (runs.empty() || runs.back().first != ff) runs.emplace_back(ff, std::vector<std::string>{});
    runs.back().second.push_back(f);
  }
  std::vector<std::unique_ptr<DocumentSource>> parts;
  for (auto& [ff, run] : runs) {
    if (ff == FileFormat::jsonl) {
      parts.push_back(std::make_unique<JsonLinesDocuments>(std::move(run), options));
    } else {
      parts.push_back(std::make_unique<TextFileDocuments>(std::move(run), options));
    }
  }
  if (parts.size() == 1) return std::move(parts.front());
  return std::make_unique<ConcatenatedDocuments>(std::move(parts));
}

}  // namespace dape::data
