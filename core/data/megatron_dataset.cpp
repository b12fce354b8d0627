#include "core/data/megatron_dataset.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common/check.h"

namespace dape::data {

static_assert(std::endian::native == std::endian::little,
              "Megatron datasets are little-endian and read by memory mapping");

namespace {

constexpr size_t kWriteBufferBytes = size_t{1} << 20;

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::string shown_bytes(const uint8_t* p, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    const char c = static_cast<char>(p[i]);
    out += (c >= 0x20 && c < 0x7f) ? std::string(1, c) : fmt::format("\\x{:02x}", p[i]);
  }
  return out;
}

void write_all(int fd, const void* data, size_t bytes, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t w = ::write(fd, p + done, bytes - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("cannot write '{}': {}", path, std::strerror(errno));
    }
    done += static_cast<size_t>(w);
  }
}

// Calls f(typed pointer) with the .bin's tokens from `offset` viewed as the dtype's type.
template <class F>
auto with_tokens(MegatronDtype d, const uint8_t* base, int64_t offset, F&& f) {
  switch (d) {
    case MegatronDtype::kUint8:
      return f(reinterpret_cast<const uint8_t*>(base) + offset);
    case MegatronDtype::kInt8:
      return f(reinterpret_cast<const int8_t*>(base) + offset);
    case MegatronDtype::kInt16:
      return f(reinterpret_cast<const int16_t*>(base) + offset);
    case MegatronDtype::kInt32:
      return f(reinterpret_cast<const int32_t*>(base) + offset);
    case MegatronDtype::kInt64:
      return f(reinterpret_cast<const int64_t*>(base) + offset);
    case MegatronDtype::kUint16:
      return f(reinterpret_cast<const uint16_t*>(base) + offset);
  }
  DAPE_CHECK(false, "dtype code {} not handled", static_cast<int>(d));
  return f(reinterpret_cast<const uint8_t*>(base) + offset);
}

}  // namespace

size_t megatron_dtype_bytes(MegatronDtype d) {
  switch (d) {
    case MegatronDtype::kUint8:
    case MegatronDtype::kInt8:
      return 1;
    case MegatronDtype::kInt16:
    case MegatronDtype::kUint16:
      return 2;
    case MegatronDtype::kInt32:
      return 4;
    case MegatronDtype::kInt64:
      return 8;
  }
  return 0;
}

const char* megatron_dtype_name(MegatronDtype d) {
  switch (d) {
    case MegatronDtype::kUint8:
      return "uint8";
    case MegatronDtype::kInt8:
      return "int8";
    case MegatronDtype::kInt16:
      return "int16";
    case MegatronDtype::kInt32:
      return "int32";
    case MegatronDtype::kInt64:
      return "int64";
    case MegatronDtype::kUint16:
      return "uint16";
  }
  return "unknown";
}

MegatronDtype megatron_dtype_from_code(uint8_t code, const std::string& path) {
  switch (code) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
    case 8:
      return static_cast<MegatronDtype>(code);
    case 6:
    case 7:
      fail(
          "Megatron index '{}': dtype code {} at byte 17 is a floating-point type (Megatron-core: "
          "{}; GPT-NeoX and older Megatron: {}; the two disagree), not token ids: refusing it",
          path, code, code == 6 ? "float64" : "float32", code == 6 ? "np.float" : "np.double");
    default:
      fail(
          "Megatron index '{}': unknown dtype code {} at byte 17; known: 1 uint8, 2 int8, 3 "
          "int16, 4 int32, 5 int64, 8 uint16",
          path, code);
  }
}

MegatronDtype megatron_dtype_for_vocab(int64_t vocab_size) {
  return vocab_size < 65500 ? MegatronDtype::kUint16 : MegatronDtype::kInt32;
}

MegatronPaths megatron_paths(const std::string& prefix) {
  return {prefix, prefix + ".idx", prefix + ".bin"};
}

std::optional<MegatronPaths> find_megatron_dataset(const std::string& path) {
  if (path.ends_with(".idx") || path.ends_with(".bin")) {
    return megatron_paths(path.substr(0, path.size() - 4));
  }
  if (!is_directory(path) && path_exists(path + ".idx")) return megatron_paths(path);
  return std::nullopt;
}

// ---- index -----------------------------------------------------------------------------------

MegatronIndex::MegatronIndex(const std::string& path, bool check_entries) : file_(path) {
  const uint8_t* p = file_.data();
  const size_t n = file_.size();
  if (n < kMegatronIndexHeaderBytes) {
    fail("Megatron index '{}' is {} bytes, shorter than the {}-byte header (truncated?)", path, n,
         kMegatronIndexHeaderBytes);
  }
  if (std::memcmp(p, kMegatronIndexMagic, sizeof(kMegatronIndexMagic)) != 0) {
    fail(
        "Megatron index '{}': bad magic \"{}\" at byte 0, expected \"MMIDIDX\\x00\\x00\" (not an "
        "mmap indexed dataset; the older 'cached'/'lazy' formats start with \"TNTIDX\")",
        path, shown_bytes(p, sizeof(kMegatronIndexMagic)));
  }
  version_ = load<uint64_t>(p + 9);
  if (version_ != kMegatronIndexVersion) {
    fail("Megatron index '{}': version {} at byte 9 is not supported (this build reads version {})",
         path, version_, kMegatronIndexVersion);
  }
  dtype_ = megatron_dtype_from_code(p[17], path);
  const uint64_t seqs = load<uint64_t>(p + 18), docs = load<uint64_t>(p + 26);
  // Bound the counts by the file before any arithmetic on them can overflow.
  const uint64_t room = n - kMegatronIndexHeaderBytes;
  if (seqs > room / 12 || docs > room / 8 || seqs * 12 + docs * 8 > room) {
    fail(
        "Megatron index '{}' is truncated: it is {} bytes, but its header's {} sequences and {} "
        "doc_idx entries need {} bytes",
        path, n, seqs, docs,
        seqs <= room && docs <= room
            ? fmt::format("{}", kMegatronIndexHeaderBytes + seqs * 12 + docs * 8)
            : std::string("more than that"));
  }
  sequences_ = static_cast<int64_t>(seqs);
  doc_entries_ = static_cast<int64_t>(docs);
  const uint64_t expected = kMegatronIndexHeaderBytes + seqs * 12 + docs * 8;
  if (n != expected) {
    fail(
        "Megatron index '{}' is {} bytes: {} more than its header's {} sequences and {} doc_idx "
        "entries need ({}){}",
        path, n, n - expected, seqs, docs, expected,
        n - expected == seqs ? "; that is one byte per sequence, the sequence modes of a "
                               "multimodal Megatron-core index, which this build does not read"
                             : "");
  }
  if (check_entries) {
    check_sizes_and_pointers();
    check_doc_idx();
  }
}

int32_t MegatronIndex::size(int64_t i) const {
  DAPE_CHECK(i >= 0 && i < sequences_, "sequence {} outside [0, {})", i, sequences_);
  return load<int32_t>(file_.data() + kMegatronIndexHeaderBytes + 4 * i);
}

int64_t MegatronIndex::pointer(int64_t i) const {
  DAPE_CHECK(i >= 0 && i < sequences_, "sequence {} outside [0, {})", i, sequences_);
  return load<int64_t>(file_.data() + kMegatronIndexHeaderBytes + 4 * sequences_ + 8 * i);
}

int64_t MegatronIndex::doc_index(int64_t i) const {
  DAPE_CHECK(i >= 0 && i < doc_entries_, "doc_idx entry {} outside [0, {})", i, doc_entries_);
  return load<int64_t>(file_.data() + kMegatronIndexHeaderBytes + 12 * sequences_ + 8 * i);
}

int64_t MegatronIndex::check_sizes_and_pointers() {
  const auto w = static_cast<int64_t>(itemsize());
  int64_t expected = 0;  // the byte offset sequence i must start at
  for (int64_t i = 0; i < sequences_; ++i) {
    const int32_t s = size(i);
    const int64_t ptr = pointer(i);
    if (s < 0) fail("Megatron index '{}': sizes[{}] = {} is negative", path(), i, s);
    if (ptr != expected && i == 0) {
      fail("Megatron index '{}': pointers[0] = {}, but the first sequence starts at byte 0", path(),
           ptr);
    }
    if (ptr != expected) {
      fail(
          "Megatron index '{}': pointers[{}] = {} is inconsistent with the entry before it: "
          "pointers[{}] + sizes[{}] × {} bytes ({}) = {} + {} × {} = {}",
          path(), i, ptr, i - 1, i - 1, w, megatron_dtype_name(dtype_), pointer(i - 1), size(i - 1),
          w, expected);
    }
    if (s > (std::numeric_limits<int64_t>::max() - expected) / w) {
      fail("Megatron index '{}': sizes[{}] = {} overflows the byte offsets", path(), i, s);
    }
    expected += s * w;
  }
  total_tokens_ = expected / w;
  return total_tokens_;
}

void MegatronIndex::check_doc_idx() const {
  if (doc_entries_ == 0) {
    fail("Megatron index '{}': doc_idx is empty; it needs at least the leading 0", path());
  }
  int64_t previous = 0;
  for (int64_t j = 0; j < doc_entries_; ++j) {
    const int64_t v = doc_index(j);
    if (j == 0 && v != 0) fail("Megatron index '{}': doc_idx[0] = {}, expected 0", path(), v);
    if (v < previous) {
      fail("Megatron index '{}': doc_idx is out of order: doc_idx[{}] = {} < doc_idx[{}] = {}",
           path(), j, v, j - 1, previous);
    }
    if (v > sequences_) {
      fail("Megatron index '{}': doc_idx[{}] = {} is beyond the {} sequences", path(), j, v,
           sequences_);
    }
    previous = v;
  }
  if (previous != sequences_) {
    fail(
        "Megatron index '{}': doc_idx ends at {} (doc_idx[{}]) but there are {} sequences: "
        "sequences {} to {} belong to no document",
        path(), previous, doc_entries_ - 1, sequences_, previous, sequences_ - 1);
  }
}

int64_t MegatronIndex::sequence_start(int64_t s) const {
  DAPE_CHECK(total_tokens_ >= 0, "pointers of '{}' not checked", path());
  if (s == sequences_) return total_tokens_;
  return pointer(s) / static_cast<int64_t>(itemsize());
}

// ---- dataset ---------------------------------------------------------------------------------

MegatronDataset::MegatronDataset(const std::string& path) {
  const auto found = find_megatron_dataset(path);
  if (!found) {
    fail("'{}' is not a Megatron dataset: neither a .idx/.bin file nor a prefix with '{}.idx'",
         path, path);
  }
  paths_ = *found;
  if (!path_exists(paths_.idx)) {
    fail("Megatron dataset '{}': the index '{}' does not exist", paths_.prefix, paths_.idx);
  }
  if (!path_exists(paths_.bin)) {
    fail("Megatron dataset '{}': the data file '{}' does not exist", paths_.prefix, paths_.bin);
  }
  index_ = MegatronIndex(paths_.idx);
  bin_ = MappedFile(paths_.bin);
  tokens_ = index_.sequence_start(index_.sequences());
  const auto expected = static_cast<uint64_t>(tokens_) * index_.itemsize();
  if (bin_.size() != expected) {
    fail(
        "Megatron data '{}' is {} bytes, but its index '{}' describes {} tokens of {} in {} "
        "sequences: {} bytes{}",
        paths_.bin, bin_.size(), paths_.idx, tokens_, megatron_dtype_name(index_.dtype()),
        index_.sequences(), expected, bin_.size() < expected ? " (truncated?)" : "");
  }
}

int64_t MegatronDataset::document_start(int64_t d) const {
  DAPE_CHECK(d >= 0 && d <= documents(), "document {} outside [0, {}]", d, documents());
  return index_.sequence_start(index_.doc_index(d));
}

void MegatronDataset::read(int64_t offset, int64_t count, int32_t* out, int64_t vocab) const {
  if (offset < 0 || count < 0 || offset > tokens_ || count > tokens_ - offset) {
    fail("Megatron data '{}': read of {} tokens at offset {} runs outside its {} tokens",
         paths_.bin, count, offset, tokens_);
  }
  with_tokens(index_.dtype(), bin_.data(), offset, [&](const auto* in) {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(in)>>;
    // One pass: the range rides along with the copy.
    T lo = 0, hi = 0;
    for (int64_t i = 0; i < count; ++i) {
      const T v = in[i];
      out[i] = static_cast<int32_t>(v);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    if (lo >= 0 && static_cast<int64_t>(hi) < vocab) return 0;
    for (int64_t i = 0; i < count; ++i) {
      const auto v = static_cast<int64_t>(in[i]);
      if (v < 0 || v >= vocab) {
        // The sequence holding the token: the last one starting at or before it.
        int64_t lo_s = 0, hi_s = index_.sequences();
        while (hi_s - lo_s > 1) {
          const int64_t mid = (lo_s + hi_s) / 2;
          (index_.sequence_start(mid) <= offset + i ? lo_s : hi_s) = mid;
        }
        fail(
            "Megatron data '{}': token id {} at token offset {} (sequence {}) is outside the "
            "vocabulary [0, {})",
            paths_.bin, v, offset + i, lo_s, vocab);
      }
    }
    DAPE_CHECK(false, "an id outside the vocabulary was seen but not found again");
    return 0;
  });
}

std::pair<int64_t, int64_t> MegatronDataset::id_range(int64_t offset, int64_t count) const {
  DAPE_CHECK(offset >= 0 && count > 0 && offset + count <= tokens_, "id range outside the data");
  return with_tokens(index_.dtype(), bin_.data(), offset, [&](const auto* in) {
    auto lo = in[0], hi = in[0];
    for (int64_t i = 1; i < count; ++i) {
      lo = std::min(lo, in[i]);
      hi = std::max(hi, in[i]);
    }
    return std::pair<int64_t, int64_t>(lo, hi);
  });
}

// ---- writer ----------------------------------------------------------------------------------

MegatronDatasetWriter::MegatronDatasetWriter(std::string prefix, MegatronDtype dtype)
    : paths_(megatron_paths(prefix)), dtype_(dtype) {
  const std::string tmp = paths_.bin + ".tmp";
  fd_ = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot create '{}': {}", tmp, std::strerror(errno));
  buffer_.reserve(kWriteBufferBytes);
}

MegatronDatasetWriter::~MegatronDatasetWriter() {
  if (!finished_) abandon();
}

void MegatronDatasetWriter::abandon() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  ::unlink((paths_.bin + ".tmp").c_str());
}

void MegatronDatasetWriter::add_sequence(std::span<const int32_t> tokens) {
  DAPE_CHECK(!finished_, "add_sequence after finish");
  if (tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    fail("Megatron data '{}': a sequence of {} tokens does not fit the index's int32 sizes",
         paths_.bin, tokens.size());
  }
  const size_t w = megatron_dtype_bytes(dtype_);
  int64_t lo = 0, hi = 0;
  switch (dtype_) {
    case MegatronDtype::kUint8:
      hi = 255;
      break;
    case MegatronDtype::kInt8:
      lo = -128, hi = 127;
      break;
    case MegatronDtype::kInt16:
      lo = -32768, hi = 32767;
      break;
    case MegatronDtype::kUint16:
      hi = 65535;
      break;
    case MegatronDtype::kInt32:
    case MegatronDtype::kInt64:
      lo = std::numeric_limits<int32_t>::min(), hi = std::numeric_limits<int32_t>::max();
      break;
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < lo || tokens[i] > hi) {
      fail("Megatron data '{}': token id {} (sequence {}, position {}) does not fit {}", paths_.bin,
           tokens[i], sizes_.size(), i, megatron_dtype_name(dtype_));
    }
    const int64_t v = tokens[i];
    const size_t at = buffer_.size();
    buffer_.resize(at + w);
    switch (dtype_) {
      case MegatronDtype::kUint8:
      case MegatronDtype::kInt8: {
        const auto b = static_cast<uint8_t>(v);
        std::memcpy(buffer_.data() + at, &b, 1);
        break;
      }
      case MegatronDtype::kInt16:
      case MegatronDtype::kUint16: {
        const auto b = static_cast<uint16_t>(v);
        std::memcpy(buffer_.data() + at, &b, 2);
        break;
      }
      case MegatronDtype::kInt32: {
        const auto b = static_cast<int32_t>(v);
        std::memcpy(buffer_.data() + at, &b, 4);
        break;
      }
      case MegatronDtype::kInt64:
        std::memcpy(buffer_.data() + at, &v, 8);
        break;
    }
    if (buffer_.size() + w > kWriteBufferBytes) flush();
  }
  sizes_.push_back(static_cast<int32_t>(tokens.size()));
  tokens_ += static_cast<int64_t>(tokens.size());
}

void MegatronDatasetWriter::end_document() {
  doc_idx_.push_back(sequences());
}

void MegatronDatasetWriter::flush() {
  write_all(fd_, buffer_.data(), buffer_.size(), paths_.bin + ".tmp");
  buffer_.clear();
}

void MegatronDatasetWriter::finish() {
  DAPE_CHECK(!finished_, "'{}' finished twice", paths_.prefix);
  if (doc_idx_.back() != sequences()) {
    fail("Megatron dataset '{}': sequences {} to {} were added after the last end_document()",
         paths_.prefix, doc_idx_.back(), sequences() - 1);
  }
  flush();
  if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
    fd_ = -1;
    fail("cannot write '{}.tmp': {}", paths_.bin, std::strerror(errno));
  }
  fd_ = -1;
  // The index, in memory: 34 + 12 N + 8 D bytes.
  std::vector<uint8_t> idx;
  auto put = [&](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    idx.insert(idx.end(), b, b + n);
  };
  put(kMegatronIndexMagic, sizeof(kMegatronIndexMagic));
  put(&kMegatronIndexVersion, 8);
  const auto code = static_cast<uint8_t>(dtype_);
  put(&code, 1);
  const auto n = static_cast<uint64_t>(sizes_.size()), d = static_cast<uint64_t>(doc_idx_.size());
  put(&n, 8);
  put(&d, 8);
  put(sizes_.data(), 4 * sizes_.size());
  int64_t pointer = 0;
  const auto w = static_cast<int64_t>(megatron_dtype_bytes(dtype_));
  for (int32_t s : sizes_) {
    put(&pointer, 8);
    pointer += s * w;
  }
  put(doc_idx_.data(), 8 * doc_idx_.size());
  if (::rename((paths_.bin + ".tmp").c_str(), paths_.bin.c_str()) != 0) {
    fail("cannot rename '{}.tmp' to '{}': {}", paths_.bin, paths_.bin, std::strerror(errno));
  }
  write_file_atomic(paths_.idx,
                    std::string_view(reinterpret_cast<const char*>(idx.data()), idx.size()));
  finished_ = true;
}

}  // namespace dape::data
