/*
 * Token shards: one file of token ids, self-describing, memory-mapped for reading.
 *
 * Layout (all integers little-endian):
 *
 *   offset  size  field
 *        0     8  magic "DAPETOK1"
 *        8     4  format version (1)
 *       12     4  dtype code: 2 = uint16 payload, 4 = uint32 payload (the element size in bytes)
 *       16     4  vocabulary size
 *       20     4  reserved (0)
 *       24     8  token count
 *       32     8  XXH64 (seed 0) of the payload bytes
 *       40     …  payload: token count × element size bytes
 *
 * The payload is uint16 whenever the vocabulary fits in 65536 ids (half the disk and page-cache
 * footprint of uint32), else uint32. The header is written last: the writer streams tokens to
 * `<file>.tmp` behind a zeroed header, hashing as it goes, then fills in the header, fsyncs and
 * renames into place, so a shard that exists under its final name is complete.
 *
 * The reader maps the file and trusts nothing: magic, version, dtype, vocabulary and the exact
 * file length are checked on open; the full checksum costs a pass over the file, so it is
 * optional (verify_checksum). Token ids are range-checked on every read window instead of once
 * per file: converting a window to int32 already touches every id, and folding a running
 * maximum into that loop costs nothing measurable (bench/data_bench), so ids at or above the
 * vocabulary are always caught, whatever was verified at open.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "common/file_util.h"

namespace dape::data {

inline constexpr char kTokenShardMagic[8] = {'D', 'A', 'P', 'E', 'T', 'O', 'K', '1'};
inline constexpr uint32_t kTokenShardVersion = 1;
inline constexpr size_t kTokenShardHeaderBytes = 40;
// The largest vocabulary a uint16 payload can hold.
inline constexpr int64_t kMaxUint16Vocab = 65536;
// Token ids are int32 in memory, so a vocabulary has at most 2^31 − 1 ids.
inline constexpr int64_t kMaxVocab = 2147483647;

enum class TokenDtype : uint32_t { kUint16 = 2, kUint32 = 4 };

inline size_t token_dtype_bytes(TokenDtype d) {
  return static_cast<size_t>(d);
}
const char* token_dtype_name(TokenDtype d);
// uint16 when every id of a `vocab_size` vocabulary fits, else uint32.
TokenDtype token_dtype_for_vocab(int64_t vocab_size);

struct TokenShardHeader {
  uint32_t version = kTokenShardVersion;
  TokenDtype dtype = TokenDtype::kUint16;
  uint32_t vocab_size = 0;
  uint32_t reserved = 0;
  uint64_t token_count = 0;
  uint64_t payload_xxh64 = 0;
};

// Serializes the 40-byte header.
void encode_token_shard_header(const TokenShardHeader& h, uint8_t* out);
// Parses and validates a header (magic, version, dtype, vocabulary) read from `path`; `bytes` is
// what is available (at least kTokenShardHeaderBytes, else the error says the file is too short).
// Does not look at the payload or the file length.
TokenShardHeader decode_token_shard_header(const uint8_t* bytes, size_t size,
                                           const std::string& path);

class TokenShardWriter {
 public:
  // Creates `<path>.tmp`; the shard appears under `path` only when finish() succeeds. Ids are
  // checked against `vocab_size` as they are appended.
  TokenShardWriter(std::string path, int64_t vocab_size);
  // Without finish(), the temporary file is removed: an abandoned shard leaves nothing behind.
  ~TokenShardWriter();
  TokenShardWriter(const TokenShardWriter&) = delete;
  TokenShardWriter& operator=(const TokenShardWriter&) = delete;

  void append(std::span<const int32_t> tokens);
  void append(int32_t token) { append(std::span<const int32_t>(&token, 1)); }
  // Writes the header, fsyncs, renames into place and fsyncs the directory.
  void finish();

  const std::string& path() const { return path_; }
  int64_t tokens_written() const { return count_; }
  TokenDtype dtype() const { return dtype_; }
  // XXH64 of the payload; valid after finish().
  uint64_t checksum() const { return checksum_; }

 private:
  void flush_buffer();
  void abandon() noexcept;

  std::string path_, tmp_path_;
  int64_t vocab_size_;
  TokenDtype dtype_;
  int fd_ = -1;
  int64_t count_ = 0;
  uint64_t checksum_ = 0;
  bool finished_ = false;
  Xxh64Stream hash_;
  std::vector<uint8_t> buffer_;
};

class TokenShardReader {
 public:
  TokenShardReader() = default;
  // Maps `path` and validates the header and the file length; with `verify_checksum`, also
  // hashes the payload and compares it with the header.
  explicit TokenShardReader(const std::string& path, bool verify_checksum = false);
  TokenShardReader(TokenShardReader&&) noexcept = default;
  TokenShardReader& operator=(TokenShardReader&&) noexcept = default;

  const std::string& path() const { return file_.path(); }
  const TokenShardHeader& header() const { return header_; }
  int64_t size() const { return static_cast<int64_t>(header_.token_count); }
  int64_t vocab_size() const { return header_.vocab_size; }
  TokenDtype dtype() const { return header_.dtype; }
  uint64_t stored_checksum() const { return header_.payload_xxh64; }
  size_t file_bytes() const { return file_.size(); }
  size_t payload_bytes() const { return file_.size() - kTokenShardHeaderBytes; }

  // Hashes the payload in chunks; `progress(bytes_done_in_this_shard)` is called after each.
  uint64_t compute_checksum(const std::function<void(int64_t)>& progress = {}) const;
  // Throws dape::Error naming the file and both checksums when they differ.
  void verify_checksum(const std::function<void(int64_t)>& progress = {}) const;

  // Copies tokens [offset, offset + count) as int32 into `out`. Throws dape::Error naming the
  // file when the window runs past the end, or naming the file, token offset and value when an
  // id is at or above the vocabulary.
  void read(int64_t offset, int64_t count, int32_t* out) const;

 private:
  MappedFile file_;
  TokenShardHeader header_;
};

}  // namespace dape::data
