// safetensors: writer → reader round trips of every dtype, and every kind of corrupt file
// rejected with a message that names the file, the tensor and the offending value.
#include "core/checkpoint/safetensors.h"

#include <gtest/gtest.h>

#include <unistd.h>
#include <cstring>

#include <filesystem>
#include <string>
#include <vector>

#include "common/check.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

using test::expect_error;

// Builds a file by hand: a header text (taken as is) and a data section.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

void expect_rejected(const std::string& header, const std::string& data,
                     const std::vector<std::string>& parts) {
  expect_error([&] { SafetensorsReader::from_bytes("bad.safetensors", raw_file(header, data)); },
               parts);
}

TEST(Safetensors, RoundTripsEveryDtypeShapeAndMetadata) {
  SafetensorsWriter w;
  w.set_metadata("scheme", "kerple");
  w.set_metadata("note", "quotes \" and \\ survive");
  const std::vector<float> f32 = {1.5f, -2.25f, 3e-8f, 1e30f, 0.0f, -0.0f};
  const std::vector<double> f64 = {1.0 / 3.0, -1e-300};
  const std::vector<int32_t> i32 = {-7, 2147483647};
  const std::vector<int64_t> i64 = {-(int64_t{1} << 40), 5};
  const std::vector<uint8_t> u8 = {0, 255, 17};
  const std::vector<uint16_t> bf16 = {0x3fc0, 0xc000};         // 1.5, −2
  const std::vector<uint16_t> f16 = {0x3e00, 0xc000, 0x0001};  // 1.5, −2, 2^−24
  w.add_f32("a/f32", {2, 3}, f32);
  w.add_f64("b.f64", {2}, f64);
  w.add("scalar", SafetensorsDType::F32, {}, f32.data(), 4);
  w.add("empty", SafetensorsDType::F32, {0, 4}, nullptr, 0);
  w.add("i32", SafetensorsDType::I32, {2}, i32.data(), 8);
  w.add("i64", SafetensorsDType::I64, {2, 1}, i64.data(), 16);
  w.add("u8", SafetensorsDType::U8, {3}, u8.data(), 3);
  w.add("bf16", SafetensorsDType::BF16, {2}, bf16.data(), 4);
  w.add("f16", SafetensorsDType::F16, {3}, f16.data(), 6);

  const std::string path = (std::filesystem::temp_directory_path() /
                            ("dape_safetensors_" + std::to_string(::getpid()) + ".safetensors"))
                               .string();
  w.write(path);
  const SafetensorsReader r(path);
  std::filesystem::remove(path);

  EXPECT_EQ(r.label(), path);
  ASSERT_NE(r.metadata_value("scheme"), nullptr);
  EXPECT_EQ(*r.metadata_value("scheme"), "kerple");
  EXPECT_EQ(*r.metadata_value("note"), "quotes \" and \\ survive");
  EXPECT_EQ(r.metadata_value("absent"), nullptr);
  ASSERT_EQ(r.entries().size(), 9u);
  EXPECT_EQ(r.entries()[0].name, "a/f32");  // header order = insertion order

  EXPECT_EQ(r.read_float("a/f32"), f32);
  EXPECT_EQ(r.entry("a/f32").shape_str(), "[2, 3]");
  EXPECT_EQ(r.read_double("b.f64"), f64);
  EXPECT_EQ(r.entry("scalar").shape_str(), "[]");
  EXPECT_EQ(r.entry("scalar").numel(), 1);
  EXPECT_EQ(r.read_double("scalar"), std::vector<double>{1.5});
  EXPECT_EQ(r.entry("empty").numel(), 0);
  EXPECT_TRUE(r.read_double("empty").empty());
  EXPECT_EQ(r.read_double("i32"), (std::vector<double>{-7, 2147483647}));
  EXPECT_EQ(r.read_double("i64"), (std::vector<double>{-1099511627776.0, 5}));
  EXPECT_EQ(r.read_double("u8"), (std::vector<double>{0, 255, 17}));
  EXPECT_EQ(r.read_double("bf16"), (std::vector<double>{1.5, -2}));
  EXPECT_EQ(r.read_double("f16"), (std::vector<double>{1.5, -2, std::ldexp(1.0, -24)}));
  EXPECT_EQ(std::memcmp(r.bytes(r.entry("i64")), i64.data(), 16), 0);
  expect_error([&] { r.entry("nope"); }, {path.c_str(), "no tensor named 'nope'"});
}

TEST(Safetensors, DataSectionIsEightByteAligned) {
  SafetensorsWriter w;
  w.add_f64("x", {1}, {2.0});
  const std::string bytes = w.serialize();
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 8);
  EXPECT_EQ(SafetensorsReader::from_bytes("mem", bytes).read_double("x")[0], 2.0);
}

TEST(Safetensors, ReadsTheSharedGoldenFileLayout) {
  // A file as Python's safetensors writes it: no padding, keys sorted, metadata first.
  const std::string header =
      R"({"__metadata__":{"heads":"2"},"k":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("q":{"dtype":"F32","shape":[],"data_offsets":[8,12]}})";
  std::string data(12, '\0');
  const float vals[3] = {1, 2, 3};
  std::memcpy(data.data(), vals, 12);
  const auto r = SafetensorsReader::from_bytes("py.safetensors", raw_file(header, data));
  EXPECT_EQ(r.read_float("k"), (std::vector<float>{1, 2}));
  EXPECT_EQ(r.read_float("q"), (std::vector<float>{3}));
}

TEST(Safetensors, RejectsCorruptFiles) {
  const std::string d8(8, '\0');
  const std::string ok = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  // Sanity: the base case is valid.
  EXPECT_NO_THROW(SafetensorsReader::from_bytes("good", raw_file(ok, d8)));

  expect_error([] { SafetensorsReader::from_bytes("tiny.safetensors", "abc"); },
               {"tiny.safetensors", "too short"});
  {  // header length beyond the end of the file
    std::string f = raw_file(ok, d8);
    const uint64_t huge = 1u << 20;
    std::memcpy(f.data(), &huge, 8);
    expect_error([&] { SafetensorsReader::from_bytes("len.safetensors", f); },
                 {"len.safetensors", "header length 1048576", "bytes 0..8"});
  }
  expect_rejected("[1, 2]", "", {"bad.safetensors", "must start with '{'"});
  expect_rejected("{\"t\": ", "", {"not valid JSON"});
  expect_rejected(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", d8,
                  {"tensor 't'", "unknown dtype \"F33\""});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8,
                  {"tensor 't'", "shape must hold non-negative integers, found -2"});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", d8,
                  {"tensor 't'", "found 2.5"});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", d8,
                  {"tensor 't'", "data_offsets must be [begin, end]"});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[2]}})", d8, {"tensor 't' lacks data_offsets"});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", d8,
                  {"tensor 't'", "unknown field 'x'"});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", d8,
                  {"tensor 't'", "[0, 16]", "run past the data section of 8 bytes"});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8,
                  {"tensor 't'", "span 8 bytes", "F32 [3] needs 12"});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", d8,
                  {"tensor 't'", "end before they begin"});
  expect_rejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  d8, {"'a' [0, 8]", "'b' [4, 8]", "overlap"});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8,
                  {"data bytes [0, 4)", "belong to no tensor", "before 't'"});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", d8,
                  {"data bytes [4, 8)", "after the last tensor"});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  d8, {"tensor 't' appears twice"});
  expect_rejected(
      R"({"__metadata__":{"a":1},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8,
      {"metadata 'a' must be a string"});
  expect_rejected(R"({"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})",
                  d8, {"tensor 't'", "too large"});
}

TEST(Safetensors, WriterRejectsBadTensors) {
  SafetensorsWriter w;
  const std::vector<float> v = {1, 2};
  w.add_f32("x", {2}, v);
  expect_error([&] { w.add_f32("x", {2}, v); }, {"'x' added twice"});
  expect_error([&] { w.add_f32("y", {3}, v); }, {"'y'", "8 bytes given", "needs 12"});
  expect_error([&] { w.add_f32("__metadata__", {2}, v); }, {"cannot name a tensor"});
  expect_error([&] { w.add_f32("z", {-2}, v); }, {"negative dimension"});
}

}  // namespace
}  // namespace dape
