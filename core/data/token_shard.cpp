#include "core/data/token_shard.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "common/check.h"

namespace dape::data {

static_assert(std::endian::native == std::endian::little,
              "token shards are little-endian and are read by memory mapping; a big-endian host "
              "would need byte swapping in TokenShardWriter and TokenShardReader");

namespace {

constexpr size_t kWriteBufferBytes = size_t{1} << 20;
constexpr size_t kHashChunkBytes = size_t{64} << 20;

template <class T>
void put(uint8_t* out, size_t offset, T v) {
  std::memcpy(out + offset, &v, sizeof(T));
}

template <class T>
T get(const uint8_t* in, size_t offset) {
  T v;
  std::memcpy(&v, in + offset, sizeof(T));
  return v;
}

void write_all(int fd, const uint8_t* data, size_t bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes) {
    ssize_t w = ::write(fd, data + done, bytes - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("cannot write '{}': {}", path, std::strerror(errno));
    }
    done += static_cast<size_t>(w);
  }
}

// Converts `count` ids of type T to int32 and returns the largest one seen. One pass: the
// maximum rides along with the copy, so the range check costs no extra read of the data.
template <class T>
T convert_and_max(const T* in, int64_t count, int32_t* out) {
  T m = 0;
  for (int64_t i = 0; i < count; ++i) {
    const T v = in[i];
    out[i] = static_cast<int32_t>(v);
    m = std::max(m, v);
  }
  return m;
}

template <class T>
[[noreturn]] void fail_out_of_vocab(const T* in, int64_t count, int64_t first_offset, int64_t vocab,
                                    const std::string& path) {
  for (int64_t i = 0; i < count; ++i) {
    if (static_cast<int64_t>(in[i]) >= vocab) {
      fail("token shard '{}': token id {} at token offset {} is outside the vocabulary [0, {})",
           path, static_cast<uint64_t>(in[i]), first_offset + i, vocab);
    }
  }
  DAPE_CHECK(false, "an id at or above the vocabulary was seen but not found again");
}

}  // namespace

const char* token_dtype_name(TokenDtype d) {
  switch (d) {
    case TokenDtype::kUint16:
      return "uint16";
    case TokenDtype::kUint32:
      return "uint32";
  }
  return "unknown";
}

TokenDtype token_dtype_for_vocab(int64_t vocab_size) {
  DAPE_CHECK(vocab_size > 0 && vocab_size <= kMaxVocab, "vocabulary size {} out of range",
             vocab_size);
  return vocab_size <= kMaxUint16Vocab ? TokenDtype::kUint16 : TokenDtype::kUint32;
}

void encode_token_shard_header(const TokenShardHeader& h, uint8_t* out) {
  std::memcpy(out, kTokenShardMagic, sizeof(kTokenShardMagic));
  put<uint32_t>(out, 8, h.version);
  put<uint32_t>(out, 12, static_cast<uint32_t>(h.dtype));
  put<uint32_t>(out, 16, h.vocab_size);
  put<uint32_t>(out, 20, h.reserved);
  put<uint64_t>(out, 24, h.token_count);
  put<uint64_t>(out, 32, h.payload_xxh64);
}

TokenShardHeader decode_token_shard_header(const uint8_t* bytes, size_t size,
                                           const std::string& path) {
  if (size < kTokenShardHeaderBytes) {
    fail("token shard '{}' is {} bytes, shorter than the {}-byte header", path, size,
         kTokenShardHeaderBytes);
  }
  if (std::memcmp(bytes, kTokenShardMagic, sizeof(kTokenShardMagic)) != 0) {
    std::string shown;
    for (size_t i = 0; i < sizeof(kTokenShardMagic); ++i) {
      const char c = static_cast<char>(bytes[i]);
      shown += (c >= 0x20 && c < 0x7f) ? std::string(1, c) : fmt::format("\\x{:02x}", bytes[i]);
    }
    fail(
        "token shard '{}': bad magic \"{}\" at byte 0, expected \"DAPETOK1\" (not a dape token "
        "shard)",
        path, shown);
  }
  TokenShardHeader h;
  h.version = get<uint32_t>(bytes, 8);
  const uint32_t dtype = get<uint32_t>(bytes, 12);
  h.vocab_size = get<uint32_t>(bytes, 16);
  h.reserved = get<uint32_t>(bytes, 20);
  h.token_count = get<uint64_t>(bytes, 24);
  h.payload_xxh64 = get<uint64_t>(bytes, 32);
  if (h.version != kTokenShardVersion) {
    fail(
        "token shard '{}': format version {} at byte 8 is not supported (this build reads "
        "version {})",
        path, h.version, kTokenShardVersion);
  }
  if (dtype != static_cast<uint32_t>(TokenDtype::kUint16) &&
      dtype != static_cast<uint32_t>(TokenDtype::kUint32)) {
    fail("token shard '{}': dtype code {} at byte 12 is not 2 (uint16) or 4 (uint32)", path, dtype);
  }
  h.dtype = static_cast<TokenDtype>(dtype);
  if (h.vocab_size == 0 || h.vocab_size > kMaxVocab) {
    fail("token shard '{}': vocabulary size {} at byte 16 is outside [1, {}]", path, h.vocab_size,
         kMaxVocab);
  }
  if (h.dtype == TokenDtype::kUint16 && h.vocab_size > kMaxUint16Vocab) {
    fail("token shard '{}': vocabulary size {} does not fit a uint16 payload (at most {})", path,
         h.vocab_size, kMaxUint16Vocab);
  }
  return h;
}

// ---- writer ----------------------------------------------------------------------------------

TokenShardWriter::TokenShardWriter(std::string path, int64_t vocab_size)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp"), vocab_size_(vocab_size) {
  if (vocab_size <= 0 || vocab_size > kMaxVocab) {
    fail("token shard '{}': vocabulary size {} is outside [1, {}]", path_, vocab_size, kMaxVocab);
  }
  dtype_ = token_dtype_for_vocab(vocab_size);
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot create '{}': {}", tmp_path_, std::strerror(errno));
  // A zeroed header holds the place; finish() overwrites it. Its zero magic marks the file as
  // incomplete should anyone open the temporary file.
  uint8_t placeholder[kTokenShardHeaderBytes] = {};
  try {
    write_all(fd_, placeholder, sizeof(placeholder), tmp_path_);
  } catch (...) {
    abandon();
    throw;
  }
  buffer_.reserve(kWriteBufferBytes);
}

TokenShardWriter::~TokenShardWriter() {
  if (!finished_) abandon();
}

void TokenShardWriter::abandon() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  ::unlink(tmp_path_.c_str());
}

void TokenShardWriter::append(std::span<const int32_t> tokens) {
  DAPE_CHECK(!finished_, "append to finished shard '{}'", path_);
  if (tokens.empty()) return;
  int32_t lo = tokens[0], hi = tokens[0];
  for (int32_t t : tokens) {
    lo = std::min(lo, t);
    hi = std::max(hi, t);
  }
  if (lo < 0 || hi >= vocab_size_) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] < 0 || tokens[i] >= vocab_size_) {
        fail("token shard '{}': token id {} at token offset {} is outside the vocabulary [0, {})",
             path_, tokens[i], count_ + static_cast<int64_t>(i), vocab_size_);
      }
    }
  }
  const size_t width = token_dtype_bytes(dtype_);
  size_t i = 0;
  while (i < tokens.size()) {
    const size_t room = (kWriteBufferBytes - buffer_.size()) / width;
    const size_t n = std::min(room, tokens.size() - i);
    const size_t at = buffer_.size();
    buffer_.resize(at + n * width);
    uint8_t* dst = buffer_.data() + at;
    if (dtype_ == TokenDtype::kUint16) {
      for (size_t k = 0; k < n; ++k) {
        const auto v = static_cast<uint16_t>(tokens[i + k]);
        std::memcpy(dst + 2 * k, &v, 2);
      }
    } else {
      std::memcpy(dst, tokens.data() + i, 4 * n);
    }
    i += n;
    if (buffer_.size() + width > kWriteBufferBytes) flush_buffer();
  }
  count_ += static_cast<int64_t>(tokens.size());
}

void TokenShardWriter::flush_buffer() {
  if (buffer_.empty()) return;
  hash_.update(buffer_.data(), buffer_.size());
  write_all(fd_, buffer_.data(), buffer_.size(), tmp_path_);
  buffer_.clear();
}

void TokenShardWriter::finish() {
  DAPE_CHECK(!finished_, "shard '{}' finished twice", path_);
  flush_buffer();
  checksum_ = hash_.digest();
  TokenShardHeader h;
  h.dtype = dtype_;
  h.vocab_size = static_cast<uint32_t>(vocab_size_);
  h.token_count = static_cast<uint64_t>(count_);
  h.payload_xxh64 = checksum_;
  uint8_t header[kTokenShardHeaderBytes];
  encode_token_shard_header(h, header);
  if (::pwrite(fd_, header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header))) {
    fail("cannot write the header of '{}': {}", tmp_path_, std::strerror(errno));
  }
  if (::fsync(fd_) != 0) fail("fsync of '{}' failed: {}", tmp_path_, std::strerror(errno));
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail("cannot close '{}': {}", tmp_path_, std::strerror(errno));
  }
  fd_ = -1;
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    fail("cannot rename '{}' to '{}': {}", tmp_path_, path_, std::strerror(errno));
  }
  finished_ = true;
  fsync_path(parent_path(path_));
}

// ---- reader ----------------------------------------------------------------------------------

TokenShardReader::TokenShardReader(const std::string& path, bool verify) : file_(path) {
  header_ = decode_token_shard_header(file_.data(), file_.size(), path);
  const size_t width = token_dtype_bytes(header_.dtype);
  // Compare in 128 bits: a corrupt count must not overflow into a plausible size.
  const unsigned __int128 expected =
      static_cast<unsigned __int128>(header_.token_count) * width + kTokenShardHeaderBytes;
  if (expected != file_.size()) {
    if (expected > static_cast<unsigned __int128>(UINT64_MAX)) {
      fail(
          "token shard '{}': header says {} tokens of {} bytes, more than any file can hold "
          "(file is {} bytes)",
          path, header_.token_count, width, file_.size());
    }
    fail(
        "token shard '{}' is {} bytes but its header ({} {} tokens) requires {} bytes: the file "
        "is {}",
        path, file_.size(), header_.token_count, token_dtype_name(header_.dtype),
        static_cast<uint64_t>(expected),
        file_.size() < expected ? "truncated" : "longer than its header says");
  }
  if (verify) verify_checksum();
}

uint64_t TokenShardReader::compute_checksum(const std::function<void(int64_t)>& progress) const {
  Xxh64Stream h;
  const uint8_t* p = file_.data() + kTokenShardHeaderBytes;
  const size_t total = payload_bytes();
  for (size_t done = 0; done < total;) {
    const size_t n = std::min(kHashChunkBytes, total - done);
    h.update(p + done, n);
    done += n;
    if (progress) progress(static_cast<int64_t>(done));
  }
  return h.digest();
}

void TokenShardReader::verify_checksum(const std::function<void(int64_t)>& progress) const {
  const uint64_t computed = compute_checksum(progress);
  if (computed != header_.payload_xxh64) {
    fail(
        "token shard '{}': checksum mismatch: header says xxh64 {}, payload hashes to {} (the "
        "file is corrupt)",
        path(), hex64(header_.payload_xxh64), hex64(computed));
  }
}

void TokenShardReader::read(int64_t offset, int64_t count, int32_t* out) const {
  if (offset < 0 || count < 0 || offset > size() || count > size() - offset) {
    fail("token shard '{}': read of {} tokens at offset {} runs outside its {} tokens", path(),
         count, offset, size());
  }
  const uint8_t* payload = file_.data() + kTokenShardHeaderBytes;
  const int64_t vocab = vocab_size();
  if (header_.dtype == TokenDtype::kUint16) {
    const auto* in = reinterpret_cast<const uint16_t*>(payload) + offset;
    if (convert_and_max(in, count, out) >= vocab)
      fail_out_of_vocab(in, count, offset, vocab, path());
  } else {
    const auto* in = reinterpret_cast<const uint32_t*>(payload) + offset;
    if (convert_and_max(in, count, out) >= vocab)
      fail_out_of_vocab(in, count, offset, vocab, path());
  }
}

}  // namespace dape::data
