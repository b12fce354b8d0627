/*
 * Shared code of the data tests: a scratch directory per test, small file edits, and a check that
 * an error's message names what it should.
 */
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/file_util.h"

namespace dape::test {

// A fresh directory under testing::TempDir(), removed with everything in it at scope exit.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = std::filesystem::path(testing::TempDir()) / "dape_data_XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    if (!made) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = made;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return join_path(path_, name); }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

// Replaces the bytes at `offset` of an existing file.
inline void patch_bytes(const std::string& path, size_t offset, const std::string& bytes) {
  std::string all = read_file(path);
  if (offset + bytes.size() > all.size()) throw std::runtime_error("patch past end of " + path);
  all.replace(offset, bytes.size(), bytes);
  write_bytes(path, all);
}

inline void truncate_by(const std::string& path, size_t bytes) {
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - bytes);
}

// Runs `f`, expects dape::Error (or a subclass), and checks that its message contains every
// string in `parts`. Returns the message.
inline std::string expect_error(const std::function<void()>& f,
                                const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
    return msg;
  }
  ADD_FAILURE() << "expected dape::Error";
  return "";
}

}  // namespace dape::test
