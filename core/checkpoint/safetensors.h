/*
 * safetensors: the tensor file format of the Hugging Face ecosystem, read and written.
 *
 * Layout: an 8-byte little-endian header length n, then n bytes of JSON (padded with spaces),
 * then the data section. The JSON maps each tensor name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (byte offsets into the data section) and may hold "__metadata__", a map of
 * strings to strings. Data is raw little-endian, row-major.
 *
 * The reader maps the file and validates everything before anything is used: the header length
 * against the file size, the JSON's structure, each dtype, shape and byte range (end ≤ data size,
 * end − begin = numel × dtype size), and that the ranges neither overlap nor leave bytes
 * unaccounted for (the format forbids holes). Every error is a dape::Error naming the file, the
 * tensor and the offending value. Values can be read raw or converted to double or float.
 *
 * The writer collects tensors (copied) and metadata and writes the file atomically, tensors in
 * the order they were added, the header padded so the data section starts 8-byte aligned. It
 * holds the whole file in memory once while writing: simple, and fine for the sizes we export.
 */
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/file_util.h"

namespace dape {

enum class SafetensorsDType : uint8_t {
  BOOL,
  U8,
  I8,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64
};

const char* safetensors_dtype_name(SafetensorsDType t);  // "F32", ...
int safetensors_dtype_size(SafetensorsDType t);          // bytes per element
// Parses a dtype name as written in the header; false if unknown.
bool parse_safetensors_dtype(std::string_view name, SafetensorsDType* out);

struct SafetensorsEntry {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::F32;
  std::vector<int64_t> shape;   // empty for a scalar
  uint64_t begin = 0, end = 0;  // byte range in the data section

  int64_t numel() const;
  std::string shape_str() const;  // "[2, 40, 4, 8]", "[]" for a scalar
};

class SafetensorsReader {
 public:
  // Maps and validates `path`; throws dape::Error naming the path and the problem.
  explicit SafetensorsReader(const std::string& path);
  // Validates an in-memory file; `label` names it in errors.
  static SafetensorsReader from_bytes(std::string label, std::string bytes);

  SafetensorsReader(SafetensorsReader&&) noexcept = default;
  SafetensorsReader& operator=(SafetensorsReader&&) noexcept = default;

  const std::string& label() const { return label_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The metadata value of `key`, or nullptr.
  const std::string* metadata_value(const std::string& key) const;
  // Tensors in the order of the header.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  // nullptr when absent.
  const SafetensorsEntry* find(std::string_view name) const;
  // Throws dape::Error naming the file when absent.
  const SafetensorsEntry& entry(std::string_view name) const;

  // The stored bytes of a tensor (little-endian, as in the file).
  const uint8_t* bytes(const SafetensorsEntry& e) const;
  // Values converted to double: every dtype (BOOL as 0/1; 64-bit integers beyond 2^53 round).
  std::vector<double> read_double(std::string_view name) const;
  std::vector<float> read_float(std::string_view name) const;

 private:
  SafetensorsReader() = default;
  void parse();
  const uint8_t* base() const;
  size_t size() const;

  std::string label_;
  MappedFile file_;
  std::string owned_;  // the file's bytes when made from_bytes
  bool owns_bytes_ = false;
  uint64_t data_start_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t, std::less<>> index_;
};

class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value);
  // Copies `nbytes` of little-endian data; nbytes must equal numel(shape) × dtype size.
  void add(const std::string& name, SafetensorsDType dtype, std::vector<int64_t> shape,
           const void* data, size_t nbytes);
  void add_f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v);
  void add_f64(const std::string& name, std::vector<int64_t> shape, const std::vector<double>& v);

  // The complete file.
  std::string serialize() const;
  // Writes the file atomically (temporary file, fsync, rename).
  void write(const std::string& path) const;

 private:
  struct Pending {
    SafetensorsEntry entry;
    std::string data;
  };
  std::map<std::string, std::string> metadata_;
  std::vector<Pending> tensors_;
};

}  // namespace dape
