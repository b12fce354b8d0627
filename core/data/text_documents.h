/*
 * Plain-text documents: every file is one document, read whole through a memory map (a .zst file
 * is decompressed into memory first: one document has to be whole to be tokenized anyway).
 *
 * Inputs are files or directories. A directory is walked recursively, each level in byte-wise
 * sorted order of entry names, so the document order (and with it the dataset) does not depend
 * on the filesystem's listing order. Hidden entries (names starting with '.') are skipped, so a
 * .git directory or editor backup is never taken for text. The bytes are passed on unchanged:
 * no decoding, no newline normalization. The only bad record is a compressed file that is
 * truncated or corrupt (zstd_stream.h).
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
  // Files ending in .zst are decompressed. Progress counts file sizes (compressed, for those).
  TextFileDocuments(std::vector<std::string> files, const ReaderOptions& options = {});
  int64_t document_count() const override { return static_cast<int64_t>(files_.size()); }
  int64_t total_bytes() const override { return total_bytes_; }
  bool next(Document& doc) override;
  void skip(int64_t n) override;
  std::string describe() const override;

 private:
  std::vector<std::string> files_;
  std::vector<int64_t> file_bytes_;
  ReaderOptions options_;
  int64_t total_bytes_ = 0;
  size_t next_ = 0;
  MappedFile current_;
  std::string decompressed_;
};

}  // namespace dape::data
