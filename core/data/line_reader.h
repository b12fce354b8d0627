/*
 * Lines of a file, plain or zstd-compressed, one at a time.
 *
 * A plain file is memory-mapped and its lines are views into the map (no copy). A compressed file
 * is decompressed block by block (zstd_stream.h) into a buffer that holds the current line: a
 * line that spans blocks or zstd frames is assembled there, so the buffer grows to the longest
 * line (a whole book, for Books3) and never to the file. skip() passes over a line without
 * assembling it, which is how record counting and skipping ahead stay cheap.
 *
 * A line ends at '\n', which is not part of it; a final line without '\n' is still a line, and a
 * file that ends with '\n' has no empty line after it. Nothing else is interpreted ('\r' stays).
 * When a compressed stream ends badly (truncated, corrupt), the bytes after the last complete
 * line, possibly none, come back as one last line marked `broken`, and problem() says what
 * happened: whatever the caller does with it, the loss is visible and every pass over the file
 * sees the same lines.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/file_util.h"
#include "core/data/zstd_stream.h"

namespace dape::data {

class LineReader {
 public:
  struct Line {
    // The line's bytes without its '\n'; valid until the next call. Empty after skip().
    std::string_view text;
    // 1-based line number in the file.
    int64_t number = 0;
    // Input bytes it spans, its '\n' included (decompressed bytes for a compressed file).
    int64_t bytes = 0;
    // The stream ended badly inside or right after this line (see problem()).
    bool broken = false;
  };

  // `compressed`: the file is zstd (zstd_stream.h). `block_bytes`: how much is decompressed at a
  // time (and the buffer's starting size). Throws dape::Error naming a file that cannot be opened.
  LineReader(const std::string& path, bool compressed, size_t block_bytes = size_t{1} << 20);

  // The next line, or false at the end.
  bool next(Line& line) { return advance(line, /*keep=*/true); }
  // The next line's number, size and state, without its text; false at the end.
  bool skip(Line& line) { return advance(line, /*keep=*/false); }

  const std::string& path() const { return path_; }
  // Set when a compressed stream ended badly.
  const std::optional<StreamProblem>& problem() const;

 private:
  bool advance(Line& line, bool keep);
  bool advance_mapped(Line& line);
  bool advance_compressed(Line& line, bool keep);
  // Decompresses more bytes after end_, growing the buffer when it is full. False at the end.
  bool fill();

  std::string path_;
  int64_t line_number_ = 0;
  bool done_ = false;
  // Plain files.
  MappedFile map_;
  size_t pos_ = 0;
  // Compressed files: buffer_[begin_, end_) holds decoded bytes not yet returned; scanned_ is
  // where the search for '\n' resumes.
  std::unique_ptr<ZstdFileReader> zstd_;
  std::vector<char> buffer_;
  size_t begin_ = 0, end_ = 0, scanned_ = 0;
  size_t block_bytes_;
};

}  // namespace dape::data
