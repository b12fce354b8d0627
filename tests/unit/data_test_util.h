/*
 * Shared code of the data tests: small file edits (tests/unit/test_util.h has the scratch
 * directory and the error-message check).
 */
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <zstd.h>

#include <cstring>
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

// One zstd frame holding `bytes` (with a content checksum when `checksum`).
inline std::string zstd_frame(const std::string& bytes, bool checksum = false, int level = 3) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, checksum ? 1 : 0);
  std::string out(ZSTD_compressBound(bytes.size()), '\0');
  const size_t n = ZSTD_compress2(c, out.data(), out.size(), bytes.data(), bytes.size());
  ZSTD_freeCCtx(c);
  if (ZSTD_isError(n)) throw std::runtime_error(ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

// `bytes` cut at `cuts` (increasing offsets), each piece its own zstd frame, concatenated.
inline std::string zstd_frames(const std::string& bytes, const std::vector<size_t>& cuts) {
  std::string out;
  size_t from = 0;
  for (size_t cut : cuts) {
    out += zstd_frame(bytes.substr(from, cut - from));
    from = cut;
  }
  return out + zstd_frame(bytes.substr(from));
}

// A zstd skippable frame (ignored by decoders) carrying `payload`.
inline std::string zstd_skippable_frame(const std::string& payload) {
  std::string out(8, '\0');
  const uint32_t magic = 0x184D2A50, size = static_cast<uint32_t>(payload.size());
  std::memcpy(out.data(), &magic, 4);
  std::memcpy(out.data() + 4, &size, 4);
  return out + payload;
}

}  // namespace dape::test
