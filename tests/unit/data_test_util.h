/*
 * Shared code of the data tests: small file edits (tests/unit/test_util.h has the scratch
 * directory and the error-message check).
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
#include "tests/unit/test_util.h"

namespace dape::test {

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

}  // namespace dape::test
