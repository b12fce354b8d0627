/*
 * A zstd-compressed file read as a stream of decompressed bytes, in blocks the caller provides.
 *
 * The compressed file is memory-mapped and fed to one ZSTD_DStream; the caller pulls
 * decompressed bytes into its own buffer, so memory holds one block of output plus zstd's window,
 * never the whole decompressed file. Several concatenated frames (what `zstd` writes for
 * appended or multi-threaded output) and skippable frames are read through as one stream.
 *
 * A stream can end badly in two ways, and both are reported, never papered over:
 *   - truncated: the file ends in the middle of a frame (a download or copy cut short); the
 *     bytes decoded before the cut are delivered, then the stream ends;
 *   - corrupt: zstd rejects the data (a bad block, a wrong frame checksum, not zstd at all).
 * Either way read() returns 0 from then on and problem() says what happened, where (the
 * compressed byte offset) and how much was decoded, so a reader can report it and stop reading
 * this file. The caller decides whether that is an error or a counted loss.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "common/file_util.h"

struct ZSTD_DCtx_s;

namespace dape::data {

// How a stream ended badly: `reason` is a short kind for tallies ("truncated zstd stream"),
// `message` the full account naming the file and the byte offset.
struct StreamProblem {
  std::string reason;
  std::string message;
};

inline constexpr const char* kTruncatedZstd = "truncated zstd stream";
inline constexpr const char* kCorruptZstd = "corrupt zstd stream";

// Whether `path` names a zstd file by its extension (".zst").
bool has_zstd_extension(const std::string& path);

class ZstdFileReader {
 public:
  // Maps `path`; throws dape::Error naming it if it cannot be opened.
  explicit ZstdFileReader(const std::string& path);
  ~ZstdFileReader();
  ZstdFileReader(const ZstdFileReader&) = delete;
  ZstdFileReader& operator=(const ZstdFileReader&) = delete;

  // Decompresses up to `capacity` bytes into `out`; returns how many were written. 0 means the
  // stream has ended: cleanly, or with problem() set.
  size_t read(char* out, size_t capacity);

  const std::optional<StreamProblem>& problem() const { return problem_; }
  const std::string& path() const { return file_.path(); }
  int64_t compressed_bytes() const { return static_cast<int64_t>(file_.size()); }
  int64_t decompressed_bytes() const { return decompressed_; }

 private:
  void end_stream();

  MappedFile file_;
  ZSTD_DCtx_s* stream_ = nullptr;
  size_t in_pos_ = 0;
  // The last return value of ZSTD_decompressStream: 0 when the frame it worked on is complete.
  size_t last_hint_ = 0;
  // The last call filled the output completely, so zstd may hold more output.
  bool output_may_remain_ = false;
  bool ended_ = false;
  int64_t decompressed_ = 0;
  std::optional<StreamProblem> problem_;
};

}  // namespace dape::data
