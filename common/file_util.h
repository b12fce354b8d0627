/*
 * Files: read-only memory maps, whole-file reads, and atomic writes.
 *
 * Atomic write = write a temporary file beside the target, fsync it, rename it over the target,
 * fsync the directory. A reader therefore sees the old file or the new one, never a torn one;
 * checkpoints and manifests rely on this. Errors name the path and the system's reason.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dape {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path` read-only; throws dape::Error naming the path if it cannot.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // Drops the pages holding bytes [offset, offset + length) from memory: a reader done with a
  // range keeps the process's resident size down (the pages are read from the file again if the
  // range is touched later).
  void release(size_t offset, size_t length) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

std::string read_file(const std::string& path);
// Writes `contents` to `path` atomically (temp file, fsync, rename, fsync of the directory).
void write_file_atomic(const std::string& path, std::string_view contents);
// fsyncs an open-able path (file or directory); throws on failure.
void fsync_path(const std::string& path);
bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
// Creates the directory and its parents; throws naming the path on failure.
void make_directories(const std::string& path);
std::string join_path(const std::string& a, const std::string& b);
std::string parent_path(const std::string& p);

}  // namespace dape
