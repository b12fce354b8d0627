#include "core/data/line_reader.h"

#include <sys/mman.h>

#include <cstring>

#include "common/check.h"

namespace dape::data {

namespace {

const std::optional<StreamProblem> kNoProblem;

}  // namespace

LineReader::LineReader(const std::string& path, bool compressed, size_t block_bytes)
    : path_(path), block_bytes_(block_bytes) {
  DAPE_CHECK(block_bytes > 0, "block size must be positive");
  if (compressed) {
    zstd_ = std::make_unique<ZstdFileReader>(path);
    buffer_.resize(block_bytes);
  } else {
    map_ = MappedFile(path);
    if (map_.size() > 0) {
      ::madvise(const_cast<uint8_t*>(map_.data()), map_.size(), MADV_SEQUENTIAL);
    }
  }
}

const std::optional<StreamProblem>& LineReader::problem() const {
  return zstd_ ? zstd_->problem() : kNoProblem;
}

bool LineReader::advance(Line& line, bool keep) {
  if (done_) return false;
  line = Line{};
  const bool got = zstd_ ? advance_compressed(line, keep) : advance_mapped(line);
  if (!got) {
    done_ = true;
    return false;
  }
  line.number = ++line_number_;
  if (line.broken) done_ = true;  // a broken stream delivers nothing after it
  return true;
}

bool LineReader::advance_mapped(Line& line) {
  const size_t size = map_.size();
  if (pos_ >= size) return false;
  const char* base = reinterpret_cast<const char*>(map_.data());
  const void* nl = std::memchr(base + pos_, '\n', size - pos_);
  const size_t end = nl ? static_cast<size_t>(static_cast<const char*>(nl) - base) : size;
  line.text = std::string_view(base + pos_, end - pos_);
  line.bytes = static_cast<int64_t>(end - pos_ + (nl ? 1 : 0));
  pos_ = nl ? end + 1 : size;
  return true;
}

bool LineReader::fill() {
  if (begin_ > 0 && buffer_.size() - end_ < buffer_.size() / 2) {
    // Move the unfinished line to the front, so the next block has room behind it.
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    scanned_ -= begin_;
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == buffer_.size()) buffer_.resize(buffer_.size() * 2);  // a line longer than it
  const size_t got = zstd_->read(buffer_.data() + end_, buffer_.size() - end_);
  end_ += got;
  return got > 0;
}

bool LineReader::advance_compressed(Line& line, bool keep) {
  int64_t dropped = 0;  // bytes of this line discarded while skipping it
  while (true) {
    const void* nl = std::memchr(buffer_.data() + scanned_, '\n', end_ - scanned_);
    if (nl) {
      const size_t at = static_cast<size_t>(static_cast<const char*>(nl) - buffer_.data());
      if (keep) line.text = std::string_view(buffer_.data() + begin_, at - begin_);
      line.bytes = dropped + static_cast<int64_t>(at - begin_ + 1);
      begin_ = scanned_ = at + 1;
      return true;
    }
    scanned_ = end_;
    if (!keep) {
      // Skipping: the scanned part will not be returned, so drop it rather than keep it.
      dropped += static_cast<int64_t>(end_ - begin_);
      begin_ = scanned_ = end_ = 0;
    }
    if (fill()) continue;
    // The stream has ended: what is left is the last line (no '\n'), or the broken remainder.
    const bool broken = zstd_->problem().has_value();
    if (begin_ == end_ && dropped == 0 && !broken) return false;
    if (keep) line.text = std::string_view(buffer_.data() + begin_, end_ - begin_);
    line.bytes = dropped + static_cast<int64_t>(end_ - begin_);
    line.broken = broken;
    begin_ = scanned_ = end_;
    return true;
  }
}

}  // namespace dape::data
