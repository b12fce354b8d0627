#include "core/data/text_documents.h"

#include <algorithm>
#include <filesystem>

#include "common/check.h"
#include "core/data/zstd_stream.h"

namespace dape::data {

namespace fs = std::filesystem;

namespace {

void walk_sorted(const fs::path& dir, std::vector<std::string>& out) {
  std::vector<fs::directory_entry> entries;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().starts_with(".")) continue;
    entries.push_back(*it);
  }
  if (ec) fail("cannot list directory '{}': {}", dir.string(), ec.message());
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.path().filename().string() < b.path().filename().string();
  });
  for (const auto& e : entries) {
    // Symbolic links to directories are not followed (no cycles); links to files are read.
    if (e.is_directory(ec) && !e.is_symlink(ec)) {
      walk_sorted(e.path(), out);
    } else if (e.is_regular_file(ec)) {
      out.push_back(e.path().string());
    }
  }
}

}  // namespace

std::vector<std::string> list_input_files(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const auto& input : inputs) {
    std::error_code ec;
    const auto status = fs::status(input, ec);
    if (ec || !fs::exists(status)) fail("input '{}' does not exist", input);
    if (fs::is_directory(status)) {
      walk_sorted(input, files);
    } else if (fs::is_regular_file(status)) {
      files.push_back(input);
    } else {
      fail("input '{}' is neither a regular file nor a directory", input);
    }
  }
  return files;
}

TextFileDocuments::TextFileDocuments(std::vector<std::string> files, const ReaderOptions& options)
    : files_(std::move(files)), options_(options) {
  for (const auto& f : files_) {
    std::error_code ec;
    const auto n = fs::file_size(f, ec);
    if (ec) fail("cannot read the size of '{}': {}", f, ec.message());
    file_bytes_.push_back(static_cast<int64_t>(n));
    total_bytes_ += static_cast<int64_t>(n);
  }
}

bool TextFileDocuments::next(Document& doc) {
  current_ = MappedFile();
  decompressed_.clear();
  if (next_ == files_.size()) return false;
  const std::string& path = files_[next_];
  doc = Document{};
  doc.origin = path;
  doc.record = static_cast<int64_t>(next_);
  doc.input_bytes = file_bytes_[next_];
  ++next_;
  if (!has_zstd_extension(path)) {
    current_ = MappedFile(path);
    doc.text = std::string_view(reinterpret_cast<const char*>(current_.data()), current_.size());
    return true;
  }
  ZstdFileReader reader(path);
  std::vector<char> block(options_.block_bytes);
  while (const size_t got = reader.read(block.data(), block.size()))
    decompressed_.append(block.data(), got);
  if (reader.problem()) {
    if (options_.on_bad_record == ReaderOptions::BadRecords::error) {
      fail("{}{}", reader.problem()->message, kSkipHint);
    }
    doc.skipped = true;
    doc.reason = reader.problem()->reason;
    doc.problem = reader.problem()->message;
    decompressed_.clear();
    return true;
  }
  doc.text = decompressed_;
  return true;
}

void TextFileDocuments::skip(int64_t n) {
  DAPE_CHECK(n >= 0 && n <= static_cast<int64_t>(files_.size() - next_),
             "skip of {} records with {} left", n, files_.size() - next_);
  next_ += static_cast<size_t>(n);
}

std::string TextFileDocuments::describe() const {
  int64_t compressed = 0;
  for (const auto& f : files_) compressed += has_zstd_extension(f) ? 1 : 0;
  return fmt::format("{} file{} of text{}", files_.size(), files_.size() == 1 ? "" : "s",
                     compressed ? fmt::format(" ({} zstd)", compressed) : "");
}

}  // namespace dape::data
