// Exact resume: 40 steps straight and 20 + resume + 20 give bitwise-identical losses and final
// parameters (same machine, same thread count).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/file_util.h"
#include "common/rng.h"
#include "core/checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "core/data/prepare.h"
#include "core/train/trainer.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

namespace fs = std::filesystem;

class TrainResume : public ::testing::Test {
 protected:
  void SetUp() override {
    // A small deterministic corpus of pseudo-words.
    Rng rng(5, 0);
    const char* words[] = {"in",  "the",   "beginning", "was",  "word",
                           "and", "light", "darkness",  "said", "let"};
    std::ofstream f(dir_ / "corpus.txt");
    for (int i = 0; i < 30000; ++i) f << words[rng.below(10)] << (i % 13 == 12 ? ".\n" : " ");
    f.close();
    data::PrepareOptions p;
    p.inputs = {(dir_ / "corpus.txt").string()};
    p.out_dir = (dir_ / "data").string();
    p.val_fraction = 0.05;
    p.show_progress = false;
    data::prepare_dataset(p);
  }

  LoadedConfig config(const std::string& run) {
    const std::string text = fmt::format(R"(
      run_dir: "{}"
      data {{ path: "{}" }}
      model {{ layers: 2 d_model: 32 heads: 4 position: "kerple" dape {{ enabled: true mlp_width: 8 }} }}
      train {{ steps: 40 seq_len: 32 micro_batch: 4 global_batch: 8 lr: 3e-3 min_lr: 3e-4 seed: 77 }}
      checkpoint {{ interval: 0 keep_last: 2 }}
      eval {{ at_end: false }}
    )",
                                         (dir_ / run).string(), (dir_ / "data").string());
    LoadedConfig c = parse_config_text(text, "test");
    validate_config(c);
    return c;
  }

  test::ScratchDir scratch_;
  fs::path dir_ = scratch_.path();
};

TEST_F(TrainResume, InterruptedRunContinuesBitForBit) {
  CpuOps ops(DType::f32, 2);
  TrainOptions fresh;
  fresh.resume = "none";
  fresh.progress = false;
  TrainSummary straight = train(config("straight"), ops, fresh);
  EXPECT_EQ(straight.last_step, 40);

  TrainOptions first = fresh;
  first.stop_at_step = 20;
  TrainSummary part1 = train(config("resumed"), ops, first);
  EXPECT_EQ(part1.last_step, 20);
  TrainOptions second;
  second.resume = "auto";
  second.progress = false;
  TrainSummary part2 = train(config("resumed"), ops, second);
  EXPECT_EQ(part2.first_step, 20);
  EXPECT_EQ(part2.last_step, 40);

  auto a = test::losses_as_written((dir_ / "straight/metrics.jsonl").string());
  auto b = test::losses_as_written((dir_ / "resumed/metrics.jsonl").string());
  ASSERT_EQ(a.size(), 40u);
  ASSERT_EQ(b.size(), 40u);
  for (int64_t s = 1; s <= 40; ++s) EXPECT_EQ(a[s], b[s]) << "loss at step " << s;
  // The loss went down: this is training, not a constant.
  EXPECT_LT(std::stod(a[40]), std::stod(a[1]) - 0.5);

  // Final parameters and optimizer state agree exactly.
  const auto ca = open_checkpoint((dir_ / "straight").string());
  const auto cb = open_checkpoint((dir_ / "resumed").string());
  ASSERT_EQ(ca.manifest.tensors_size(), cb.manifest.tensors_size());
  for (int i = 0; i < ca.manifest.tensors_size(); ++i)
    EXPECT_EQ(ca.manifest.tensors(i).shards(0).xxh64(), cb.manifest.tensors(i).shards(0).xxh64())
        << ca.manifest.tensors(i).name();
}

TEST_F(TrainResume, FreshRunRefusesADirectoryWithCheckpoints) {
  CpuOps ops(DType::f32, 2);
  TrainOptions o;
  o.resume = "none";
  o.progress = false;
  o.stop_at_step = 2;
  train(config("twice"), ops, o);
  EXPECT_THROW(train(config("twice"), ops, o), Error);
}

}  // namespace
}  // namespace dape
