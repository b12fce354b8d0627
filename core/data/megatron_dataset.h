/*
 * Megatron-LM / GPT-NeoX "mmap" indexed datasets: tokenized data as a pair PREFIX.bin + PREFIX.idx,
 * read directly (memory-mapped), and written.
 *
 * PREFIX.idx (all integers little-endian):
 *
 *   offset          size  field
 *        0             9  magic "MMIDIDX\0\0"
 *        9             8  version, uint64 = 1
 *       17             1  dtype code, uint8: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 8 uint16
 *       18             8  N, uint64: number of sequences
 *       26             8  D, uint64: number of doc_idx entries
 *       34          4·N  sizes[N], int32: tokens per sequence
 *   34 + 4N         8·N  pointers[N], int64: byte offset of each sequence in .bin
 *   34 + 12N        8·D  doc_idx[D], int64: document boundaries as sequence indices
 *
 * PREFIX.bin holds the sequences' tokens back to back, each of the dtype's size. Document d is
 * sequences [doc_idx[d], doc_idx[d+1]), so there are D − 1 documents (Megatron's preprocessing
 * writes one sequence per document, or one per sentence with --split-sentences). Codes 6 and 7
 * are floating-point types whose meaning differs between Megatron (float64/float32) and GPT-NeoX
 * (np.float/np.double): never token ids, so refused, as is any other code.
 *
 * Nothing is trusted. Opening checks the magic, version and dtype; the .idx length against N and
 * D; every size (>= 0), every pointer (pointers[0] = 0, pointers[i+1] = pointers[i] +
 * sizes[i]·itemsize, which also keeps each pointer inside the data); doc_idx (starts at 0, never
 * decreases, ends at N: every sequence belongs to a document); and the .bin length against the
 * tokens the index describes. That costs one pass over the index (12 bytes per sequence), not
 * over the tokens. Errors name the file, the entry index and the values. The files carry no
 * vocabulary size, so readers are given one, and every read checks its ids against it (as token
 * shards do, token_shard.h): an id below 0 or at or above the vocabulary is an error naming the
 * .bin file, the token offset, the sequence and the value.
 *
 * The .idx arrays start at byte 34, which aligns no element type, so index entries are read with
 * memcpy; the tokens are aligned (the mapping starts on a page and every pointer is a multiple of
 * the item size).
 */
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/file_util.h"

namespace dape::data {

inline constexpr char kMegatronIndexMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
inline constexpr uint64_t kMegatronIndexVersion = 1;
inline constexpr size_t kMegatronIndexHeaderBytes = 34;

enum class MegatronDtype : uint8_t {
  kUint8 = 1,
  kInt8 = 2,
  kInt16 = 3,
  kInt32 = 4,
  kInt64 = 5,
  kUint16 = 8,
};

size_t megatron_dtype_bytes(MegatronDtype d);
const char* megatron_dtype_name(MegatronDtype d);
// The dtype of a code, or a dape::Error naming `path` and the code (6 and 7 with why).
MegatronDtype megatron_dtype_from_code(uint8_t code, const std::string& path);
// The smallest dtype Megatron would choose for a vocabulary: uint16 up to 65500 ids, else int32.
MegatronDtype megatron_dtype_for_vocab(int64_t vocab_size);

// The two files of a dataset.
struct MegatronPaths {
  std::string prefix, idx, bin;
};
// `path` as a Megatron dataset: "X.idx", "X.bin", or the prefix "X" whose "X.idx" exists.
// nullopt when it is none of these.
std::optional<MegatronPaths> find_megatron_dataset(const std::string& path);
MegatronPaths megatron_paths(const std::string& prefix);

// The .idx file: header and arrays, validated on their own (not against the .bin).
class MegatronIndex {
 public:
  MegatronIndex() = default;
  // Maps the file, checks the header and the file length. With `check_entries`, also every
  // size, pointer and doc_idx entry (check_sizes_and_pointers, check_doc_idx).
  explicit MegatronIndex(const std::string& path, bool check_entries = true);

  const std::string& path() const { return file_.path(); }
  MegatronDtype dtype() const { return dtype_; }
  size_t itemsize() const { return megatron_dtype_bytes(dtype_); }
  int64_t sequences() const { return sequences_; }
  int64_t doc_idx_entries() const { return doc_entries_; }
  int64_t documents() const { return doc_entries_ > 0 ? doc_entries_ - 1 : 0; }
  uint64_t version() const { return version_; }
  size_t file_bytes() const { return file_.size(); }

  int32_t size(int64_t i) const;
  int64_t pointer(int64_t i) const;
  int64_t doc_index(int64_t i) const;

  // Throws dape::Error at the first size < 0 or pointer that does not follow from the ones
  // before. Returns the total number of tokens.
  int64_t check_sizes_and_pointers();
  // Throws dape::Error at the first doc_idx entry out of order or out of [0, N], or when doc_idx
  // does not start at 0 and end at N.
  void check_doc_idx() const;

  // The first token of sequence s (s == N: the total), valid once the pointers are checked.
  int64_t sequence_start(int64_t s) const;

 private:
  MappedFile file_;
  uint64_t version_ = 0;
  MegatronDtype dtype_ = MegatronDtype::kUint16;
  int64_t sequences_ = 0, doc_entries_ = 0;
  int64_t total_tokens_ = -1;
};

// An opened, validated pair.
class MegatronDataset {
 public:
  // `path` as find_megatron_dataset accepts it. Throws dape::Error naming the files when they
  // are missing or disagree with each other (see above).
  explicit MegatronDataset(const std::string& path);

  const MegatronPaths& paths() const { return paths_; }
  const MegatronIndex& index() const { return index_; }
  int64_t tokens() const { return tokens_; }
  int64_t documents() const { return index_.documents(); }
  // Documents' tokens: [document_start(d), document_start(d + 1)), d in [0, documents()].
  int64_t document_start(int64_t d) const;

  // Copies tokens [offset, offset + count) of the .bin as int32 into `out`. Throws dape::Error
  // when the window runs outside the tokens, or naming the token offset, its sequence and the
  // value when an id is outside [0, vocab_size).
  void read(int64_t offset, int64_t count, int32_t* out, int64_t vocab_size) const;
  // The smallest and largest id of tokens [offset, offset + count) (no vocabulary check).
  std::pair<int64_t, int64_t> id_range(int64_t offset, int64_t count) const;

 private:
  MegatronPaths paths_;
  MegatronIndex index_;
  MappedFile bin_;
  int64_t tokens_ = 0;
};

// Writes a pair: sequences are appended to PREFIX.bin.tmp as they come, the index is kept in
// memory (12 bytes per sequence) and written at finish(), then both files are renamed into place
// (.bin first), so a PREFIX.idx that exists belongs to a complete pair. Without finish() the
// temporary files are removed.
class MegatronDatasetWriter {
 public:
  MegatronDatasetWriter(std::string prefix, MegatronDtype dtype);
  ~MegatronDatasetWriter();
  MegatronDatasetWriter(const MegatronDatasetWriter&) = delete;
  MegatronDatasetWriter& operator=(const MegatronDatasetWriter&) = delete;

  // Appends one sequence; throws dape::Error when an id does not fit the dtype.
  void add_sequence(std::span<const int32_t> tokens);
  // Closes the current document: the sequences since the last close form one.
  void end_document();
  void add_document(std::span<const int32_t> tokens) {
    add_sequence(tokens);
    end_document();
  }
  // Writes the index and moves both files into place. Sequences after the last end_document()
  // are an error (they would belong to no document).
  void finish();

  int64_t sequences() const { return static_cast<int64_t>(sizes_.size()); }
  int64_t tokens() const { return tokens_; }

 private:
  void flush();
  void abandon() noexcept;

  MegatronPaths paths_;
  MegatronDtype dtype_;
  int fd_ = -1;
  bool finished_ = false;
  std::vector<uint8_t> buffer_;
  std::vector<int32_t> sizes_;
  std::vector<int64_t> doc_idx_{0};
  int64_t tokens_ = 0;
};

}  // namespace dape::data
