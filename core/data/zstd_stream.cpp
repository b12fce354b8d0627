#include "core/data/zstd_stream.h"

#include <sys/mman.h>
#include <zstd.h>

#include "common/check.h"

namespace dape::data {

bool has_zstd_extension(const std::string& path) {
  return path.ends_with(".zst");
}

ZstdFileReader::ZstdFileReader(const std::string& path) : file_(path) {
  stream_ = ZSTD_createDStream();
  DAPE_CHECK(stream_ != nullptr, "ZSTD_createDStream failed");
  const size_t init = ZSTD_initDStream(stream_);
  DAPE_CHECK(!ZSTD_isError(init), "ZSTD_initDStream: {}", ZSTD_getErrorName(init));
  if (file_.size() > 0) {
    // Read once, front to back: let the kernel read ahead and drop pages behind us.
    ::madvise(const_cast<uint8_t*>(file_.data()), file_.size(), MADV_SEQUENTIAL);
  }
}

ZstdFileReader::~ZstdFileReader() {
  ZSTD_freeDStream(stream_);
}

void ZstdFileReader::end_stream() {
  ended_ = true;
  if (last_hint_ != 0 && !problem_) {
    problem_ = StreamProblem{
        kTruncatedZstd,
        fmt::format(
            "'{}': the zstd stream is truncated: the file's {} bytes end in the middle of a "
            "frame (after {} decompressed bytes); the rest of that frame is missing",
            path(), file_.size(), decompressed_)};
  }
}

size_t ZstdFileReader::read(char* out, size_t capacity) {
  DAPE_CHECK(capacity > 0, "read into an empty buffer");
  if (ended_) return 0;
  ZSTD_outBuffer output{out, capacity, 0};
  ZSTD_inBuffer input{file_.data(), file_.size(), in_pos_};
  while (output.pos == 0) {
    if (input.pos == input.size && !output_may_remain_) {
      end_stream();
      break;
    }
    const size_t before = input.pos, produced = output.pos;
    const size_t hint = ZSTD_decompressStream(stream_, &output, &input);
    if (ZSTD_isError(hint)) {
      problem_ = StreamProblem{
          kCorruptZstd,
          fmt::format("'{}': corrupt zstd data near compressed byte offset {} of {} (after {} "
                      "decompressed bytes): {}",
                      path(), before, file_.size(), decompressed_ + output.pos,
                      ZSTD_getErrorName(hint))};
      ended_ = true;
      break;
    }
    // A call that neither reads nor writes says nothing about the frame: after a frame has
    // ended with the output full, an extra call with no input asks for the next frame's header.
    if (input.pos != before || output.pos != produced) last_hint_ = hint;
    output_may_remain_ = output.pos == output.size;
  }
  in_pos_ = input.pos;
  decompressed_ += static_cast<int64_t>(output.pos);
  return output.pos;
}

}  // namespace dape::data
