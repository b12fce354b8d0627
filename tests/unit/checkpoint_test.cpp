#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/check.h"
#include "common/file_util.h"
#include "core/checkpoint/checkpoint.h"
#include "core/model/decoder.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

using test::error_of;

namespace fs = std::filesystem;

ModelSpec small_spec() {
  ModelSpec s;
  s.layers = 1;
  s.d_model = 8;
  s.heads = 2;
  s.head_dim = 4;
  s.mlp_hidden = 16;
  s.vocab = 10;
  s.padded_vocab = 16;
  s.position = PositionScheme::kerple;
  s.dape = true;
  s.dape_width = 4;
  return s;
}

class CheckpointTest : public ::testing::Test {
 protected:
  // Saves a checkpoint of a freshly initialized model with non-zero optimizer moments.
  std::string save(int64_t step, int keep_last = 0, const std::string& protect = "") {
    Decoder model(small_spec(), ops_);
    model.initialize(11);
    AdamW opt(ops_, model.params(), {});
    ops_.fill(model.params().grads(), 0.5);
    opt.step(1e-3, 1);
    TrainingState st;
    st.step = step;
    st.samples_consumed = step * 4;
    st.loss = 2.5;
    st.rng["seed"] = 11;
    return save_checkpoint(dir_.string(), ops_, model.params(), &opt, st, "model { layers: 1 }\n",
                           keep_last, protect);
  }

  CpuOps ops_{DType::f32, 1};
  test::ScratchDir scratch_;
  fs::path dir_ = scratch_.path();
};

TEST_F(CheckpointTest, RoundTripRestoresEverythingExactly) {
  Decoder model(small_spec(), ops_);
  model.initialize(11);
  AdamW opt(ops_, model.params(), {});
  ops_.fill(model.params().grads(), 0.25);
  opt.step(1e-3, 1);
  TrainingState st;
  st.step = 40;
  st.samples_consumed = 160;
  st.rng["seed"] = 5;
  const std::string saved =
      save_checkpoint(dir_.string(), ops_, model.params(), &opt, st, "cfg", 2);
  EXPECT_EQ(fs::path(saved).filename(), "step_00000040");
  EXPECT_EQ(find_latest_checkpoint(dir_.string()), saved);

  Decoder other(small_spec(), ops_);
  other.initialize(12);
  AdamW other_opt(ops_, other.params(), {});
  TrainingState loaded =
      load_checkpoint(open_checkpoint(dir_.string()), ops_, other.params(), &other_opt);
  EXPECT_EQ(loaded.step, 40);
  EXPECT_EQ(loaded.samples_consumed, 160);
  EXPECT_EQ(loaded.rng.at("seed"), 5u);
  EXPECT_EQ(download<float>(ops_, model.params().values()),
            download<float>(ops_, other.params().values()));
  EXPECT_EQ(download<float>(ops_, opt.m()), download<float>(ops_, other_opt.m()));
  EXPECT_EQ(download<float>(ops_, opt.v()), download<float>(ops_, other_opt.v()));
  EXPECT_NO_THROW(inspect_checkpoint(saved, true));
}

TEST_F(CheckpointTest, FlippedByteNamesFileAndTensor) {
  const std::string d = save(10);
  const std::string shard = d + "/shard_00000.bin";
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    char c;
    f.read(&c, 1);
    f.seekp(100);
    c ^= 0x10;
    f.write(&c, 1);
  }
  Decoder model(small_spec(), ops_);
  AdamW opt(ops_, model.params(), {});
  std::string msg =
      error_of([&] { load_checkpoint(open_checkpoint(d), ops_, model.params(), &opt); });
  EXPECT_NE(msg.find("shard_00000.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fails its checksum"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor '"), std::string::npos) << msg;
  EXPECT_THROW(inspect_checkpoint(d, true), Error);
}

TEST_F(CheckpointTest, MissingAndTruncatedShardsAreErrors) {
  const std::string d = save(10);
  Decoder model(small_spec(), ops_);
  const std::string shard = d + "/shard_00000.bin";
  fs::resize_file(shard, fs::file_size(shard) - 3);
  std::string msg =
      error_of([&] { load_checkpoint(open_checkpoint(d), ops_, model.params(), nullptr); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  fs::remove(shard);
  msg = error_of([&] { load_checkpoint(open_checkpoint(d), ops_, model.params(), nullptr); });
  EXPECT_NE(msg.find("shard file 'shard_00000.bin' is missing"), std::string::npos) << msg;
}

TEST_F(CheckpointTest, UnreadableManifestAndNonCheckpointsAreErrors) {
  const std::string d = save(10);
  write_file_atomic(d + "/manifest.pb", "this is not a protobuf \xff\xff\xff\xff");
  std::string msg = error_of([&] { open_checkpoint(d); });
  EXPECT_NE(msg.find("unreadable"), std::string::npos) << msg;
  msg = error_of([&] { open_checkpoint((dir_ / "nothing").string()); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  fs::create_directories(dir_ / "empty");
  msg = error_of([&] { open_checkpoint((dir_ / "empty").string()); });
  EXPECT_NE(msg.find("is not a checkpoint"), std::string::npos) << msg;
}

TEST_F(CheckpointTest, IncompleteStepIsIgnoredAndLatestFallsBack) {
  const std::string good = save(10);
  const std::string newer = save(20);
  // A save that died before its manifest: newest step, but incomplete; `latest` still names it.
  fs::remove(newer + "/manifest.pb");
  EXPECT_EQ(find_latest_checkpoint(dir_.string()), good);
}

TEST_F(CheckpointTest, KeepLastPrunesOldestButNeverTheProtectedOne) {
  const std::string first = save(10, 2);
  save(20, 2);
  save(30, 2, first);
  save(40, 2, first);
  EXPECT_TRUE(fs::exists(first));
  EXPECT_FALSE(fs::exists(dir_ / "checkpoints/step_00000020"));
  EXPECT_TRUE(fs::exists(dir_ / "checkpoints/step_00000030"));
  EXPECT_TRUE(fs::exists(dir_ / "checkpoints/step_00000040"));
  // Without protection only the newest two remain.
  save(50, 2);
  EXPECT_FALSE(fs::exists(first));
  EXPECT_FALSE(fs::exists(dir_ / "checkpoints/step_00000030"));
}

TEST_F(CheckpointTest, ShapeMismatchIsAnError) {
  const std::string d = save(10);
  ModelSpec wider = small_spec();
  wider.d_model = 12;
  wider.head_dim = 6;
  Decoder model(wider, ops_);
  std::string msg =
      error_of([&] { load_checkpoint(open_checkpoint(d), ops_, model.params(), nullptr); });
  EXPECT_NE(msg.find("has shape"), std::string::npos) << msg;
}

}  // namespace
}  // namespace dape
