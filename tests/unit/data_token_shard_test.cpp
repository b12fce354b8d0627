#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "common/checksum.h"
#include "common/rng.h"
#include "core/data/token_shard.h"
#include "tests/unit/data_test_util.h"

namespace dape::data {
namespace {

using test::expect_error;
using test::ScratchDir;

std::vector<int32_t> random_ids(size_t n, int64_t vocab, uint64_t seed) {
  Rng r(seed, 3);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = static_cast<int32_t>(r.below(static_cast<uint64_t>(vocab)));
  v.front() = 0;
  v.back() = static_cast<int32_t>(vocab - 1);
  return v;
}

void write_shard(const std::string& path, int64_t vocab, const std::vector<int32_t>& ids,
                 size_t piece = 1000) {
  TokenShardWriter w(path, vocab);
  for (size_t i = 0; i < ids.size(); i += piece)
    w.append(std::span<const int32_t>(ids).subspan(i, std::min(piece, ids.size() - i)));
  w.finish();
}

// Independent decoding of the file: header fields by offset, payload by width.
void expect_file_holds(const std::string& path, int64_t vocab, const std::vector<int32_t>& ids,
                       size_t width) {
  const std::string bytes = read_file(path);
  ASSERT_EQ(bytes.size(), 40 + ids.size() * width);
  EXPECT_EQ(bytes.substr(0, 8), "DAPETOK1");
  uint32_t u32;
  uint64_t u64;
  std::memcpy(&u32, bytes.data() + 8, 4);
  EXPECT_EQ(u32, 1u);
  std::memcpy(&u32, bytes.data() + 12, 4);
  EXPECT_EQ(u32, width);
  std::memcpy(&u32, bytes.data() + 16, 4);
  EXPECT_EQ(u32, vocab);
  std::memcpy(&u64, bytes.data() + 24, 8);
  EXPECT_EQ(u64, ids.size());
  std::memcpy(&u64, bytes.data() + 32, 8);
  EXPECT_EQ(u64, xxh64(bytes.data() + 40, bytes.size() - 40));
  for (size_t i = 0; i < ids.size(); ++i) {
    uint32_t v = 0;
    std::memcpy(&v, bytes.data() + 40 + i * width, width);
    ASSERT_EQ(v, static_cast<uint32_t>(ids[i])) << "token " << i;
  }
}

void round_trip(int64_t vocab, size_t width, size_t n) {
  ScratchDir dir;
  const std::string path = dir / "s.tok";
  const auto ids = random_ids(n, vocab, static_cast<uint64_t>(vocab));
  write_shard(path, vocab, ids, 70001);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  expect_file_holds(path, vocab, ids, width);

  TokenShardReader r(path, /*verify_checksum=*/true);
  EXPECT_EQ(r.size(), static_cast<int64_t>(n));
  EXPECT_EQ(r.vocab_size(), vocab);
  EXPECT_EQ(token_dtype_bytes(r.dtype()), width);
  std::vector<int32_t> all(n);
  r.read(0, static_cast<int64_t>(n), all.data());
  EXPECT_EQ(all, ids);
  std::vector<int32_t> window(5);
  r.read(static_cast<int64_t>(n) - 5, 5, window.data());
  EXPECT_EQ(window, std::vector<int32_t>(ids.end() - 5, ids.end()));
}

TEST(TokenShard, RoundTripUint16) {
  round_trip(257, 2, 600000);
}  // crosses write buffers
TEST(TokenShard, RoundTripUint16LargestVocab) {
  round_trip(65536, 2, 5000);
}
TEST(TokenShard, RoundTripUint32) {
  round_trip(65537, 4, 5000);
}
TEST(TokenShard, RoundTripUint32LargeVocab) {
  round_trip(200000, 4, 300000);
}

TEST(TokenShard, EmptyShard) {
  ScratchDir dir;
  write_shard(dir / "e.tok", 257, {});
  TokenShardReader r(dir / "e.tok", true);
  EXPECT_EQ(r.size(), 0);
  r.read(0, 0, nullptr);
}

TEST(TokenShard, AbandonedWriterLeavesNothing) {
  ScratchDir dir;
  {
    TokenShardWriter w(dir / "a.tok", 257);
    w.append(5);
    EXPECT_TRUE(std::filesystem::exists(dir / "a.tok.tmp"));
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "a.tok.tmp"));
  EXPECT_FALSE(std::filesystem::exists(dir / "a.tok"));
}

TEST(TokenShard, WriterRejectsIdsOutsideVocabulary) {
  ScratchDir dir;
  TokenShardWriter w(dir / "w.tok", 257);
  std::vector<int32_t> ok = {1, 2, 3};
  w.append(ok);
  std::vector<int32_t> bad = {4, 257, 6};
  expect_error([&] { w.append(bad); }, {"w.tok", "257", "offset 4", "[0, 257)"});
  std::vector<int32_t> negative = {-3};
  expect_error([&] { w.append(negative); }, {"w.tok", "-3", "offset 3"});
}

TEST(TokenShard, TruncatedFileNamesSizes) {
  ScratchDir dir;
  const std::string path = dir / "t.tok";
  write_shard(path, 257, random_ids(100, 257, 1));
  test::truncate_by(path, 3);
  expect_error([&] { TokenShardReader r(path); }, {path, "237 bytes", "240 bytes", "truncated"});
}

TEST(TokenShard, LongerFileIsAnError) {
  ScratchDir dir;
  const std::string path = dir / "l.tok";
  write_shard(path, 257, random_ids(10, 257, 1));
  test::write_bytes(path, read_file(path) + "xx");
  expect_error([&] { TokenShardReader r(path); }, {path, "62 bytes", "60 bytes", "longer"});
}

TEST(TokenShard, BadMagicVersionDtypeAndShortFile) {
  ScratchDir dir;
  const std::string path = dir / "m.tok";
  write_shard(path, 257, random_ids(10, 257, 1));
  const std::string good = read_file(path);

  test::patch_bytes(path, 0, "GPT2TOK1");
  expect_error([&] { TokenShardReader r(path); }, {path, "bad magic", "GPT2TOK1"});

  test::write_bytes(path, good);
  test::patch_bytes(path, 8, std::string("\x07\0\0\0", 4));
  expect_error([&] { TokenShardReader r(path); }, {path, "version 7"});

  test::write_bytes(path, good);
  test::patch_bytes(path, 12, std::string("\x03\0\0\0", 4));
  expect_error([&] { TokenShardReader r(path); }, {path, "dtype code 3"});

  test::write_bytes(path, good);
  test::patch_bytes(path, 16, std::string("\0\0\x02\0", 4));  // vocab 131072 in a uint16 shard
  expect_error([&] { TokenShardReader r(path); }, {path, "131072", "uint16"});

  test::write_bytes(path, good.substr(0, 17));
  expect_error([&] { TokenShardReader r(path); }, {path, "17 bytes", "header"});
}

TEST(TokenShard, ChecksumMismatchDetectedWhenVerifying) {
  ScratchDir dir;
  const std::string path = dir / "c.tok";
  auto ids = random_ids(1000, 257, 2);
  ids[500] = 10;
  write_shard(path, 257, ids);
  const std::string stored = hex64(xxh64(read_file(path).data() + 40, 2000));
  test::patch_bytes(path, 40 + 2 * 500, std::string("\x0b", 1));  // 10 -> 11, still in range
  const std::string computed = hex64(xxh64(read_file(path).data() + 40, 2000));
  TokenShardReader unverified(path);  // header and length are fine
  std::vector<int32_t> out(1000);
  unverified.read(0, 1000, out.data());
  EXPECT_EQ(out[500], 11);
  expect_error([&] { TokenShardReader r(path, /*verify_checksum=*/true); },
               {path, "checksum mismatch", stored, computed});
  expect_error([&] { unverified.verify_checksum(); }, {path, "checksum mismatch"});
}

TEST(TokenShard, IdAtOrAboveVocabularyIsCaughtOnEveryRead) {
  ScratchDir dir;
  const std::string path = dir / "v.tok";
  std::vector<int32_t> ids(3000, 7);
  ids[2500] = 300;  // written under a vocabulary of 1000 ...
  write_shard(path, 1000, ids);
  test::patch_bytes(path, 16, std::string("\x01\x01\0\0", 4));  // ... then relabeled 257
  TokenShardReader r(path, /*verify_checksum=*/true);  // the checksum covers the payload only
  std::vector<int32_t> out(3000);
  r.read(0, 2500, out.data());  // windows without the bad id read fine
  r.read(2501, 499, out.data());
  expect_error([&] { r.read(2000, 1000, out.data()); },
               {path, "token id 300", "token offset 2500", "[0, 257)"});
  expect_error([&] { r.read(2500, 1, out.data()); }, {path, "token id 300", "token offset 2500"});
}

TEST(TokenShard, Uint32IdAboveInt32RangeIsCaught) {
  ScratchDir dir;
  const std::string path = dir / "big.tok";
  write_shard(path, 100000, {1, 2, 3});
  test::patch_bytes(path, 40 + 4, std::string("\xff\xff\xff\xff", 4));
  TokenShardReader r(path);
  std::vector<int32_t> out(3);
  expect_error([&] { r.read(0, 3, out.data()); }, {path, "4294967295", "token offset 1"});
}

TEST(TokenShard, ReadOutsideShardIsAnError) {
  ScratchDir dir;
  const std::string path = dir / "o.tok";
  write_shard(path, 257, random_ids(10, 257, 1));
  TokenShardReader r(path);
  std::vector<int32_t> out(20);
  expect_error([&] { r.read(5, 6, out.data()); }, {path, "6 tokens at offset 5", "10 tokens"});
  expect_error([&] { r.read(-1, 1, out.data()); }, {path, "offset -1"});
}

TEST(TokenShard, DtypeFollowsVocabulary) {
  EXPECT_EQ(token_dtype_for_vocab(257), TokenDtype::kUint16);
  EXPECT_EQ(token_dtype_for_vocab(65536), TokenDtype::kUint16);
  EXPECT_EQ(token_dtype_for_vocab(65537), TokenDtype::kUint32);
  EXPECT_EQ(token_dtype_for_vocab(50257), TokenDtype::kUint16);
}

}  // namespace
}  // namespace dape::data
