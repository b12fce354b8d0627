#include "core/data/text_documents.h"

#include <algorithm>
#include <filesystem>

#include "common/check.h"

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

TextFileDocuments::TextFileDocuments(std::vector<std::string> files) : files_(std::move(files)) {
  for (const auto& f : files_) {
    std::error_code ec;
    const auto n = fs::file_size(f, ec);
    if (ec) fail("cannot read the size of '{}': {}", f, ec.message());
    total_bytes_ += static_cast<int64_t>(n);
  }
}

bool TextFileDocuments::next(Document& doc) {
  if (next_ == files_.size()) {
    current_ = MappedFile();
    return false;
  }
  current_ = MappedFile(files_[next_]);
  doc.text = std::string_view(reinterpret_cast<const char*>(current_.data()), current_.size());
  doc.origin = files_[next_];
  ++next_;
  return true;
}

}  // namespace dape::data
