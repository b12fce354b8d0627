#include "core/checkpoint/safetensors.h"

#include <simdjson.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>

#include "common/check.h"
#include "common/json_writer.h"

namespace dape {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader copies it as is");

namespace {

struct DTypeInfo {
  SafetensorsDType type;
  const char* name;
  int size;
};

constexpr DTypeInfo kDTypes[] = {
    {SafetensorsDType::BOOL, "BOOL", 1}, {SafetensorsDType::U8, "U8", 1},
    {SafetensorsDType::I8, "I8", 1},     {SafetensorsDType::I16, "I16", 2},
    {SafetensorsDType::U16, "U16", 2},   {SafetensorsDType::F16, "F16", 2},
    {SafetensorsDType::BF16, "BF16", 2}, {SafetensorsDType::I32, "I32", 4},
    {SafetensorsDType::U32, "U32", 4},   {SafetensorsDType::F32, "F32", 4},
    {SafetensorsDType::F64, "F64", 8},   {SafetensorsDType::I64, "I64", 8},
    {SafetensorsDType::U64, "U64", 8},
};

// The format caps the header at 100 MB; a larger length is a corrupt file, not a big one.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const char* const kMetadataKey = "__metadata__";

// numel of a shape, or -1 when it overflows int64.
int64_t checked_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return -1;
  return n;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while ((mantissa & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mantissa & 0x3ffu) << 13;
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | mantissa << 13;
  } else {
    bits = sign | (exponent + 127 - 15) << 23 | mantissa << 13;
  }
  return std::bit_cast<float>(bits);
}

template <class S>
void widen(const uint8_t* p, int64_t n, double* out) {
  for (int64_t i = 0; i < n; ++i) {
    S v;
    std::memcpy(&v, p + i * sizeof(S), sizeof(S));
    out[i] = static_cast<double>(v);
  }
}

}  // namespace

const char* safetensors_dtype_name(SafetensorsDType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.name;
  return "?";
}

int safetensors_dtype_size(SafetensorsDType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.size;
  return 0;
}

bool parse_safetensors_dtype(std::string_view name, SafetensorsDType* out) {
  for (const auto& d : kDTypes)
    if (name == d.name) {
      *out = d.type;
      return true;
    }
  return false;
}

int64_t SafetensorsEntry::numel() const {
  return checked_numel(shape);
}

std::string SafetensorsEntry::shape_str() const {
  return shape_text(shape);
}

// ---- reader ----------------------------------------------------------------------------------

SafetensorsReader::SafetensorsReader(const std::string& path) : label_(path), file_(path) {
  parse();
}

SafetensorsReader SafetensorsReader::from_bytes(std::string label, std::string bytes) {
  SafetensorsReader r;
  r.label_ = std::move(label);
  r.owned_ = std::move(bytes);
  r.owns_bytes_ = true;
  r.parse();
  return r;
}

const uint8_t* SafetensorsReader::base() const {
  return owns_bytes_ ? reinterpret_cast<const uint8_t*>(owned_.data()) : file_.data();
}

size_t SafetensorsReader::size() const {
  return owns_bytes_ ? owned_.size() : file_.size();
}

void SafetensorsReader::parse() {
  const std::string& f = label_;
  const uint8_t* p = base();
  const uint64_t file_size = size();
  if (file_size < 8)
    fail("safetensors file '{}': {} bytes, too short for the 8-byte header length", f, file_size);
  uint64_t header_len;
  std::memcpy(&header_len, p, 8);
  if (header_len == 0 || header_len > kMaxHeaderBytes || header_len > file_size - 8)
    fail(
        "safetensors file '{}': header length {} (bytes 0..8) is impossible: the file has {} "
        "bytes after the length field, and a header holds 1 to {} bytes",
        f, header_len, file_size - 8, kMaxHeaderBytes);
  data_start_ = 8 + header_len;
  const uint64_t data_size = file_size - data_start_;
  if (p[8] != '{')
    fail("safetensors file '{}': the header (byte 8) must start with '{{', found byte 0x{:02x}", f,
         p[8]);

  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto err = parser.parse(reinterpret_cast<const char*>(p + 8), header_len).get(root))
    fail("safetensors file '{}': the header (bytes 8..{}) is not valid JSON: {}", f, data_start_,
         simdjson::error_message(err));
  simdjson::dom::object top;
  if (root.get_object().get(top))
    fail("safetensors file '{}': the header (bytes 8..{}) is not a JSON object", f, data_start_);

  bool seen_metadata = false;
  for (auto field : top) {
    const std::string name(field.key);
    const simdjson::dom::element value = field.value;
    if (name == kMetadataKey) {
      if (seen_metadata) fail("safetensors file '{}': '__metadata__' appears twice", f);
      seen_metadata = true;
      simdjson::dom::object meta;
      if (value.get_object().get(meta))
        fail("safetensors file '{}': '__metadata__' must be an object of strings", f);
      for (auto m : meta) {
        std::string_view text;
        if (m.value.get_string().get(text))
          fail("safetensors file '{}': metadata '{}' must be a string, found {}", f,
               std::string(m.key), simdjson::to_string(m.value));
        if (!metadata_.emplace(std::string(m.key), std::string(text)).second)
          fail("safetensors file '{}': metadata key '{}' appears twice", f, std::string(m.key));
      }
      continue;
    }
    if (index_.count(name)) fail("safetensors file '{}': tensor '{}' appears twice", f, name);
    simdjson::dom::object info;
    if (value.get_object().get(info))
      fail(
          "safetensors file '{}': tensor '{}' must map to an object with dtype, shape and "
          "data_offsets",
          f, name);

    SafetensorsEntry e;
    e.name = name;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    // A non-negative JSON integer, or an error naming the field.
    auto integer = [&](simdjson::dom::element el, const char* what) -> uint64_t {
      uint64_t u;
      if (el.is_uint64() && !el.get_uint64().get(u)) return u;
      int64_t i;
      if (el.is_int64() && !el.get_int64().get(i) && i >= 0) return static_cast<uint64_t>(i);
      fail("safetensors file '{}': tensor '{}': {} must hold non-negative integers, found {}", f,
           name, what, simdjson::to_string(el));
    };
    for (auto kv : info) {
      const std::string_view key = kv.key;
      if (key == "dtype") {
        std::string_view dt;
        if (kv.value.get_string().get(dt) || !parse_safetensors_dtype(dt, &e.dtype))
          fail(
              "safetensors file '{}': tensor '{}': unknown dtype {}; expected one of BOOL, U8, "
              "I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64",
              f, name, simdjson::to_string(kv.value));
        has_dtype = true;
      } else if (key == "shape") {
        simdjson::dom::array dims;
        if (kv.value.get_array().get(dims))
          fail("safetensors file '{}': tensor '{}': shape must be an array, found {}", f, name,
               simdjson::to_string(kv.value));
        for (auto d : dims) {
          const uint64_t v = integer(d, "shape");
          if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            fail("safetensors file '{}': tensor '{}': dimension {} is too large", f, name, v);
          e.shape.push_back(static_cast<int64_t>(v));
        }
        has_shape = true;
      } else if (key == "data_offsets") {
        simdjson::dom::array offs;
        if (kv.value.get_array().get(offs) || offs.size() != 2)
          fail("safetensors file '{}': tensor '{}': data_offsets must be [begin, end], found {}", f,
               name, simdjson::to_string(kv.value));
        e.begin = integer(offs.at(0).value_unsafe(), "data_offsets");
        e.end = integer(offs.at(1).value_unsafe(), "data_offsets");
        has_offsets = true;
      } else {
        fail(
            "safetensors file '{}': tensor '{}': unknown field '{}' (expected dtype, shape, "
            "data_offsets)",
            f, name, std::string(key));
      }
    }
    if (!has_dtype || !has_shape || !has_offsets)
      fail("safetensors file '{}': tensor '{}' lacks {}", f, name,
           !has_dtype ? "dtype" : (!has_shape ? "shape" : "data_offsets"));

    const int64_t numel = e.numel();
    uint64_t need = 0;
    if (numel < 0 ||
        __builtin_mul_overflow(static_cast<uint64_t>(numel),
                               static_cast<uint64_t>(safetensors_dtype_size(e.dtype)), &need))
      fail("safetensors file '{}': tensor '{}': shape {} is too large", f, name, e.shape_str());
    if (e.begin > e.end)
      fail("safetensors file '{}': tensor '{}': data_offsets [{}, {}] end before they begin", f,
           name, e.begin, e.end);
    if (e.end > data_size)
      fail(
          "safetensors file '{}': tensor '{}': data_offsets [{}, {}] (file bytes {}..{}) run past "
          "the data section of {} bytes",
          f, name, e.begin, e.end, data_start_ + e.begin, data_start_ + e.end, data_size);
    if (e.end - e.begin != need)
      fail(
          "safetensors file '{}': tensor '{}': data_offsets [{}, {}] span {} bytes, but {} {} "
          "needs {} ({} elements of {} bytes)",
          f, name, e.begin, e.end, e.end - e.begin, safetensors_dtype_name(e.dtype), e.shape_str(),
          need, numel, safetensors_dtype_size(e.dtype));
    index_.emplace(name, entries_.size());
    entries_.push_back(std::move(e));
  }

  // The byte ranges must tile the data section: no overlap, no hole, nothing left over.
  std::vector<size_t> order(entries_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::pair(entries_[a].begin, entries_[a].end) <
           std::pair(entries_[b].begin, entries_[b].end);
  });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (size_t k : order) {
    const SafetensorsEntry& e = entries_[k];
    if (e.begin == e.end) continue;  // an empty tensor occupies no bytes
    if (e.begin < covered)
      fail("safetensors file '{}': tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", f,
           previous->name, previous->begin, previous->end, e.name, e.begin, e.end);
    if (e.begin > covered)
      fail(
          "safetensors file '{}': data bytes [{}, {}) (file bytes {}..{}) belong to no tensor "
          "(before '{}')",
          f, covered, e.begin, data_start_ + covered, data_start_ + e.begin, e.name);
    covered = e.end;
    previous = &e;
  }
  if (covered != data_size)
    fail(
        "safetensors file '{}': data bytes [{}, {}) (file bytes {}..{}) after the last tensor "
        "belong to no tensor",
        f, covered, data_size, data_start_ + covered, file_size);
}

const std::string* SafetensorsReader::metadata_value(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const SafetensorsEntry* SafetensorsReader::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const SafetensorsEntry& SafetensorsReader::entry(std::string_view name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) fail("safetensors file '{}': no tensor named '{}'", label_, std::string(name));
  return *e;
}

const uint8_t* SafetensorsReader::bytes(const SafetensorsEntry& e) const {
  return base() + data_start_ + e.begin;
}

std::vector<double> SafetensorsReader::read_double(std::string_view name) const {
  const SafetensorsEntry& e = entry(name);
  const int64_t n = e.numel();
  const uint8_t* p = bytes(e);
  std::vector<double> out(static_cast<size_t>(n));
  switch (e.dtype) {
    case SafetensorsDType::BOOL:
      for (int64_t i = 0; i < n; ++i) out[i] = p[i] ? 1.0 : 0.0;
      break;
    case SafetensorsDType::U8:
      widen<uint8_t>(p, n, out.data());
      break;
    case SafetensorsDType::I8:
      widen<int8_t>(p, n, out.data());
      break;
    case SafetensorsDType::I16:
      widen<int16_t>(p, n, out.data());
      break;
    case SafetensorsDType::U16:
      widen<uint16_t>(p, n, out.data());
      break;
    case SafetensorsDType::I32:
      widen<int32_t>(p, n, out.data());
      break;
    case SafetensorsDType::U32:
      widen<uint32_t>(p, n, out.data());
      break;
    case SafetensorsDType::I64:
      widen<int64_t>(p, n, out.data());
      break;
    case SafetensorsDType::U64:
      widen<uint64_t>(p, n, out.data());
      break;
    case SafetensorsDType::F32:
      widen<float>(p, n, out.data());
      break;
    case SafetensorsDType::F64:
      widen<double>(p, n, out.data());
      break;
    case SafetensorsDType::F16:
    case SafetensorsDType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = e.dtype == SafetensorsDType::F16
                     ? half_to_float(h)
                     : std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
      }
      break;
  }
  return out;
}

std::vector<float> SafetensorsReader::read_float(std::string_view name) const {
  const SafetensorsEntry& e = entry(name);
  if (e.dtype == SafetensorsDType::F32) {
    std::vector<float> out(static_cast<size_t>(e.numel()));
    std::memcpy(out.data(), bytes(e), out.size() * sizeof(float));
    return out;
  }
  const auto d = read_double(name);
  return std::vector<float>(d.begin(), d.end());
}

// ---- writer ----------------------------------------------------------------------------------

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

void SafetensorsWriter::add(const std::string& name, SafetensorsDType dtype,
                            std::vector<int64_t> shape, const void* data, size_t nbytes) {
  if (name.empty() || name == kMetadataKey)
    fail("safetensors writer: '{}' cannot name a tensor", name);
  for (const auto& t : tensors_)
    if (t.entry.name == name) fail("safetensors writer: tensor '{}' added twice", name);
  for (int64_t d : shape)
    if (d < 0)
      fail("safetensors writer: tensor '{}' has a negative dimension in {}", name,
           shape_text(shape));
  const int64_t numel = checked_numel(shape);
  if (numel < 0)
    fail("safetensors writer: tensor '{}': shape {} is too large", name, shape_text(shape));
  const size_t need = static_cast<size_t>(numel) * safetensors_dtype_size(dtype);
  if (nbytes != need)
    fail("safetensors writer: tensor '{}': {} bytes given, {} {} needs {}", name, nbytes,
         safetensors_dtype_name(dtype), shape_text(shape), need);
  Pending p;
  p.entry.name = name;
  p.entry.dtype = dtype;
  p.entry.shape = std::move(shape);
  p.data.assign(static_cast<const char*>(data), nbytes);
  tensors_.push_back(std::move(p));
}

void SafetensorsWriter::add_f32(const std::string& name, std::vector<int64_t> shape,
                                const std::vector<float>& v) {
  add(name, SafetensorsDType::F32, std::move(shape), v.data(), v.size() * sizeof(float));
}

void SafetensorsWriter::add_f64(const std::string& name, std::vector<int64_t> shape,
                                const std::vector<double>& v) {
  add(name, SafetensorsDType::F64, std::move(shape), v.data(), v.size() * sizeof(double));
}

std::string SafetensorsWriter::serialize() const {
  JsonWriter j;
  j.begin_object();
  if (!metadata_.empty()) {
    j.key(kMetadataKey).begin_object();
    for (const auto& [k, v] : metadata_) j.field(k, std::string_view(v));
    j.end_object();
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    j.key(t.entry.name).begin_object();
    j.field("dtype", safetensors_dtype_name(t.entry.dtype));
    j.key("shape").begin_array();
    for (int64_t d : t.entry.shape) j.value(d);
    j.end_array();
    j.key("data_offsets").begin_array().value(offset).value(offset + t.data.size()).end_array();
    j.end_object();
    offset += t.data.size();
  }
  j.end_object();
  std::string header = j.str();
  header.append((8 - (header.size() % 8)) % 8, ' ');  // the data section starts 8-byte aligned

  std::string out;
  out.reserve(8 + header.size() + offset);
  const uint64_t len = header.size();
  out.append(reinterpret_cast<const char*>(&len), 8);
  out += header;
  for (const auto& t : tensors_) out += t.data;
  return out;
}

void SafetensorsWriter::write(const std::string& path) const {
  write_file_atomic(path, serialize());
}

}  // namespace dape
