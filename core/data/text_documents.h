/*
 * Plain-text documents: every file is one document, read whole through a memory map.
 *
 * Inputs are files or directories. A directory is walked recursively, each level in byte-wise
 * sorted order of entry names, so the document order (and with it the dataset) does not depend
 * on the filesystem's listing order. Hidden entries (names starting with '.') are skipped, so a
 * .git directory or editor backup is never taken for text. The bytes are passed on unchanged:
 * no decoding, no newline normalization.
 */
#pragma once

#include "common/file_util.h"
#include "core/data/document_source.h"

namespace dape::data {

// The files `inputs` name, in document order: a file as given, a directory walked as above.
// Throws dape::Error naming an input that does not exist.
std::vector<std::string> list_input_files(const std::vector<std::string>& inputs);

class TextFileDocuments final : public DocumentSource {
 public:
  explicit TextFileDocuments(std::vector<std::string> files);
  int64_t document_count() const override { return static_cast<int64_t>(files_.size()); }
  int64_t total_bytes() const override { return total_bytes_; }
  bool next(Document& doc) override;

 private:
  std::vector<std::string> files_;
  int64_t total_bytes_ = 0;
  size_t next_ = 0;
  MappedFile current_;
};

}  // namespace dape::data
