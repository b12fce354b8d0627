#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "core/data/dataset.h"
#include "core/data/dataset_manifest.h"
#include "core/data/prepare.h"
#include "tests/unit/data_test_util.h"

namespace dape::data {
namespace {

using test::expect_error;
using test::ScratchDir;

// A dataset of three documents with tiny shards: train stream "alpha⏎beta gamma⏎delta⏎" (the
// end-of-document token shown as ⏎), 23 tokens in shards of 7, 7, 7 and 2; no validation split.
struct SmallDataset {
  ScratchDir dir;
  std::string ds = dir / "ds";
  std::vector<int32_t> tokens;
  SmallDataset() {
    const std::vector<std::string> docs = {"alpha", "beta gamma", "delta"};
    for (size_t i = 0; i < docs.size(); ++i) {
      test::write_bytes(dir / fmt::format("in/{}.txt", i), docs[i]);
      for (unsigned char c : docs[i]) tokens.push_back(c);
      tokens.push_back(256);
    }
    PrepareOptions o;
    o.inputs = {dir / "in"};
    o.out_dir = ds;
    o.val_fraction = 0;
    o.shard_tokens = 7;
    o.show_progress = false;
    prepare_dataset(o);
  }
  std::string manifest() const { return read_file(join_path(ds, "dataset.pbtxt")); }
  void set_manifest(const std::string& text) const {
    test::write_bytes(join_path(ds, "dataset.pbtxt"), text);
  }
};

std::string replace_first(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << "'" << from << "' not in:\n" << s;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

TEST(TokenStream, ReadsEveryWindowAcrossShardBoundaries) {
  SmallDataset d;
  TokenDataset ds(d.ds);
  const TokenStream& s = ds.train();
  ASSERT_EQ(s.num_shards(), 4u);
  ASSERT_EQ(s.size(), 23);
  EXPECT_EQ(s.vocab_size(), 257);
  for (int64_t off = 0; off <= s.size(); ++off) {
    for (int64_t n = 0; off + n <= s.size(); ++n) {
      std::vector<int32_t> got(static_cast<size_t>(n) + 1, -7);
      s.read(off, n, got.data());
      EXPECT_EQ(std::vector<int32_t>(got.begin(), got.end() - 1),
                std::vector<int32_t>(d.tokens.begin() + off, d.tokens.begin() + off + n))
          << "offset " << off << " count " << n;
      EXPECT_EQ(got.back(), -7) << "wrote past the window";
    }
  }
}

TEST(TokenStream, ReadPastTheEndNamesTheSplit) {
  SmallDataset d;
  TokenDataset ds(d.ds);
  std::vector<int32_t> out(30);
  expect_error([&] { ds.train().read(15, 9, out.data()); },
               {"split 'train'", d.ds, "9 tokens at offset 15", "23 tokens"});
  expect_error([&] { ds.train().read(-1, 2, out.data()); }, {"offset -1"});
  expect_error([&] { ds.validation().read(0, 1, out.data()); }, {"split 'validation'", "0 tokens"});
}

TEST(TokenDataset, MissingShardIsNamed) {
  SmallDataset d;
  std::filesystem::remove(join_path(d.ds, "train_00001.tok"));
  expect_error([&] { TokenDataset ds(d.ds); }, {d.ds, "train_00001.tok", "does not exist"});
}

TEST(TokenDataset, TruncatedShardIsNamedWithSizes) {
  SmallDataset d;
  const std::string shard = join_path(d.ds, "train_00003.tok");
  test::truncate_by(shard, 2);
  expect_error([&] { TokenDataset ds(d.ds); }, {shard, "42 bytes", "44 bytes", "truncated"});
}

TEST(TokenDataset, ManifestAndShardDisagreementsAreNamed) {
  SmallDataset d;
  const std::string good = d.manifest();
  // Token count: the shard's header says 7, the manifest 8 (split total kept consistent).
  d.set_manifest(
      replace_first(replace_first(good, "tokens: 7", "tokens: 8"), "tokens: 23", "tokens: 24"));
  expect_error([&] { TokenDataset ds(d.ds); },
               {d.ds, "train_00000.tok", "holds 7 tokens", "lists 8"});
  // Checksum.
  const Dataset m = parse_manifest(good, "x");
  const uint64_t sum = m.train().shards(1).xxh64();
  d.set_manifest(replace_first(good, std::to_string(sum), std::to_string(sum ^ 1)));
  expect_error([&] { TokenDataset ds(d.ds); },
               {d.ds, "train_00001.tok", hex64(sum), hex64(sum ^ 1)});
  // Split total against its shards.
  d.set_manifest(replace_first(good, "tokens: 23", "tokens: 22"));
  expect_error([&] { TokenDataset ds(d.ds); }, {"dataset.pbtxt", "tokens is 22", "hold 23"});
  // Vocabulary.
  d.set_manifest(replace_first(good, "vocab_size: 257", "vocab_size: 300"));
  expect_error([&] { TokenDataset ds(d.ds); }, {"dataset.pbtxt", "300", "byte tokenizer"});
  d.set_manifest(replace_first(good, "vocab_size: 257", "vocab_size: 0"));
  expect_error([&] { TokenDataset ds(d.ds); }, {"dataset.pbtxt", "vocab_size must be > 0", "0"});
  // A shard path leaving the dataset directory.
  d.set_manifest(replace_first(good, "\"train_00000.tok\"", "\"../train_00000.tok\""));
  expect_error([&] { TokenDataset ds(d.ds); }, {"dataset.pbtxt", "../train_00000.tok"});
  d.set_manifest(good);
  EXPECT_EQ(TokenDataset(d.ds).train().size(), 23);
}

TEST(TokenDataset, MalformedManifestNamesFileAndLine) {
  SmallDataset d;
  const std::string mpath = join_path(d.ds, "dataset.pbtxt");
  d.set_manifest("version: 1\nvocab_size: 257\nvocab_size: oops\n");
  expect_error([&] { TokenDataset ds(d.ds); }, {mpath, ":3:", "line 3"});
  d.set_manifest("version: 1\n\n\n\ntokeniser { kind: \"byte\" }\n");
  expect_error([&] { TokenDataset ds(d.ds); }, {mpath, "line 5", "tokeniser"});
  std::filesystem::remove(mpath);
  expect_error([&] { TokenDataset ds(d.ds); }, {d.ds, "not a dataset", "dataset.pbtxt"});
  expect_error([&] { TokenDataset ds(d.dir / "nowhere"); }, {d.dir / "nowhere", "does not exist"});
}

TEST(TokenDataset, VerifyChecksumsCatchesACorruptPayload) {
  SmallDataset d;
  const std::string shard = join_path(d.ds, "train_00001.tok");
  test::patch_bytes(shard, 40, std::string("q\0", 2));  // an in-vocabulary id: only a hash sees it
  TokenDataset unverified(d.ds);
  std::vector<int32_t> out(1);
  unverified.train().read(7, 1, out.data());
  EXPECT_EQ(out[0], 'q');
  expect_error([&] { TokenDataset ds(d.ds, {.verify_checksums = true, .show_progress = false}); },
               {shard, "checksum mismatch"});
}

TEST(TokenDataset, ManifestRoundTripsThroughText) {
  SmallDataset d;
  const Dataset m = load_manifest(d.ds);
  EXPECT_EQ(manifest_to_text(parse_manifest(manifest_to_text(m), "x")), manifest_to_text(m));
  EXPECT_EQ(m.tokenizer().kind(), "byte");
  EXPECT_EQ(m.train().documents(), 3);
  EXPECT_EQ(m.sources_size(), 1);
}

}  // namespace
}  // namespace dape::data
