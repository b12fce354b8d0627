#include <gtest/gtest.h>

#include <filesystem>

#include "core/data/inspect_data.h"
#include "core/data/prepare.h"
#include "core/data/token_shard.h"
#include "tests/unit/data_test_util.h"

namespace dape::data {
namespace {

using test::ScratchDir;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Runs `f`, expects InspectFailure, returns its report after checking the message parts.
std::string expect_inspect_failure(const std::function<void()>& f,
                                   const std::vector<std::string>& message_parts) {
  try {
    f();
  } catch (const InspectFailure& e) {
    for (const auto& p : message_parts)
      EXPECT_TRUE(contains(e.what(), p)) << "message lacks '" << p << "': " << e.what();
    return e.report();
  }
  ADD_FAILURE() << "expected InspectFailure";
  return "";
}

struct Prepared {
  ScratchDir dir;
  std::string ds = dir / "ds";
  Prepared() {
    test::write_bytes(dir / "in.txt", "Hello, \"shard\"!\nSecond line.");
    PrepareOptions o;
    o.inputs = {dir / "in.txt"};
    o.out_dir = ds;
    o.val_fraction = 0.2;
    o.shard_tokens = 20;
    o.show_progress = false;
    prepare_dataset(o);
  }
};

TEST(InspectTokenShard, ReportsHeaderChecksumAndDecodedText) {
  Prepared p;
  const std::string shard = join_path(p.ds, "train_00000.tok");
  const std::string quick = inspect_token_shard(shard, false);
  EXPECT_TRUE(contains(quick, shard)) << quick;
  EXPECT_TRUE(contains(quick, "DAPETOK1 version 1")) << quick;
  EXPECT_TRUE(contains(quick, "uint16 (code 2)")) << quick;
  EXPECT_TRUE(contains(quick, "257 (byte tokenizer)")) << quick;
  EXPECT_TRUE(contains(quick, "tokens         : 20")) << quick;
  EXPECT_TRUE(contains(quick, "not verified")) << quick;
  EXPECT_TRUE(contains(quick, "first ids      : 72 101 108 108 111")) << quick;
  EXPECT_TRUE(contains(quick, R"("Hello, \"shard\"!\nSeco")")) << quick;
  const std::string verified = inspect_token_shard(shard, true);
  EXPECT_TRUE(contains(verified, "OK")) << verified;
  EXPECT_FALSE(contains(verified, "MISMATCH")) << verified;
}

TEST(InspectTokenShard, ChecksumMismatchThrowsAfterTheReport) {
  Prepared p;
  const std::string shard = join_path(p.ds, "train_00000.tok");
  test::patch_bytes(shard, 40, std::string("J\0", 2));
  EXPECT_NO_THROW(inspect_token_shard(shard, false));  // without verify, nothing to see
  const std::string report =
      expect_inspect_failure([&] { inspect_token_shard(shard, true); }, {shard, "MISMATCH"});
  EXPECT_TRUE(contains(report, "computed")) << report;
  EXPECT_TRUE(contains(report, "MISMATCH")) << report;
  EXPECT_TRUE(contains(report, "\"Jello")) << report;  // the rest of the report is still there
}

TEST(InspectTokenShard, TruncatedShardAndOutOfVocabularyIdsAreReported) {
  Prepared p;
  const std::string shard = join_path(p.ds, "train_00000.tok");
  test::truncate_by(shard, 4);
  std::string report =
      expect_inspect_failure([&] { inspect_token_shard(shard, false); }, {shard, "truncated"});
  EXPECT_TRUE(contains(report, "tokens         : 20")) << report;

  TokenShardWriter w(p.dir / "v.tok", 1000);
  w.append(std::vector<int32_t>{1, 2, 999});
  w.finish();
  test::patch_bytes(p.dir / "v.tok", 16, std::string("\x01\x01\0\0", 4));  // vocab 257
  report = expect_inspect_failure([&] { inspect_token_shard(p.dir / "v.tok", true); },
                                  {"token id 999", "token offset 2"});
  EXPECT_TRUE(contains(report, "ERROR")) << report;

  test::write_bytes(p.dir / "junk.tok", "not a shard at all, but long enough to have a header");
  test::expect_error([&] { inspect_token_shard(p.dir / "junk.tok", false); }, {"bad magic"});
}

TEST(InspectDataset, ReportsSplitsShardsAndEntropy) {
  Prepared p;
  for (bool verify : {false, true}) {
    const std::string r = inspect_dataset(p.ds, verify);
    EXPECT_TRUE(contains(r, "tokenizer      : byte (end of document 256)")) << r;
    EXPECT_TRUE(contains(r, "vocab size     : 257")) << r;
    EXPECT_TRUE(contains(r, "split train     : 24 tokens, 1 documents, 2 shards")) << r;
    EXPECT_TRUE(contains(r, "split validation: 6 tokens")) << r;
    EXPECT_TRUE(contains(r, "train_00001.tok")) << r;
    EXPECT_TRUE(contains(r, "val_00000.tok")) << r;
    EXPECT_TRUE(contains(r, verify ? "OK (verified)" : "OK (header)")) << r;
    EXPECT_TRUE(contains(r, "bits per token")) << r;
    EXPECT_TRUE(contains(r, "\"Hello, ")) << r;
  }
}

TEST(InspectDataset, CorruptAndMissingShardsAreListedThenThrown) {
  Prepared p;
  test::patch_bytes(join_path(p.ds, "train_00001.tok"), 40, std::string("Z\0", 2));
  std::string r =
      expect_inspect_failure([&] { inspect_dataset(p.ds, true); }, {"train_00001.tok", "MISMATCH"});
  EXPECT_TRUE(contains(r, "train_00000.tok")) << r;
  EXPECT_TRUE(contains(r, "OK (verified)")) << r;  // the intact shard
  EXPECT_TRUE(contains(r, "MISMATCH")) << r;
  EXPECT_TRUE(contains(r, "val_00000.tok")) << r;  // listing went on past the bad shard

  std::filesystem::remove(join_path(p.ds, "val_00000.tok"));
  r = expect_inspect_failure([&] { inspect_dataset(p.ds, false); }, {"val_00000.tok", "MISSING"});
  EXPECT_TRUE(contains(r, "MISSING")) << r;
}

}  // namespace
}  // namespace dape::data
