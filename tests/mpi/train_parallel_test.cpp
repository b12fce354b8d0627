// Data-parallel training under mpirun (1, 2 and 3 ranks): 10 steps of a small DAPE-Kerple model
// on every rank of the job give the losses and the final parameters (and AdamW moments) of one
// process training alone on the same global batches, within 1e-5 relative; with ZeRO-1 on and
// off, with gradient buckets of a few kB (many, sent during backward) and with one bucket.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "common/file_util.h"
#include "common/rng.h"
#include "core/checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/data/prepare.h"
#include "core/model/decoder.h"
#include "core/optim/adamw_optimizer.h"
#include "core/train/trainer.h"
#include "kernels/cpu/cpu_ops.h"
#include "parallel/comm.h"
#include "tests/mpi/mpi_test_util.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

using test::world;

// Every value of a checkpoint's parameters and moments, by name.
std::map<std::string, std::vector<float>> tensors_of(const std::string& run_dir,
                                                     const LoadedConfig& config, Ops& ops) {
  const CheckpointRef ref = open_checkpoint(run_dir);
  const data::TokenDataset dataset(config.msg.data().path(), {});
  // The whole model, padded as at the run's tensor-parallel size.
  ModelSpec spec =
      ModelSpec::from_config(config.msg.model(), dataset.vocab_size(), config.msg.parallel().tp());
  spec.tp = 1;
  Decoder model(spec, ops);
  AdamW optimizer(ops, model.params(), {});
  load_checkpoint(ref, ops, model.params(), &optimizer);
  std::map<std::string, std::vector<float>> out;
  for (const auto& v : model.params().views()) {
    out[v.spec.name] = download<float>(ops, v.value);
    out["optim.m." + v.spec.name] =
        download<float>(ops, optimizer.m().slice(v.offset, v.spec.shape));
    out["optim.v." + v.spec.name] =
        download<float>(ops, optimizer.v().slice(v.offset, v.spec.shape));
  }
  return out;
}

class DataParallelTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    corpus_ = std::make_unique<test::SharedWordCorpus>(5, 13);
    dir_ = corpus_->dir();
  }
  void TearDown() override { world().barrier(); }

  LoadedConfig config(const std::string& run, const std::string& parallel,
                      const std::string& model_extra = "") {
    const std::string text =
        fmt::format(R"(
      run_dir: "{}"
      data {{ path: "{}" }}
      model {{ layers: 2 d_model: 32 heads: 4 position: "kerple" dape {{ enabled: true mlp_width: 8 }} {} }}
      train {{ steps: 10 seq_len: 32 micro_batch: 2 global_batch: 24 lr: 3e-3 min_lr: 3e-4 seed: 77 }}
      parallel {{ {} }}
      checkpoint {{ interval: 0 keep_last: 1 }}
      eval {{ at_end: false }}
    )",
                    join_path(dir_, run), join_path(dir_, "data"), model_extra, parallel);
    return parse_config_text(text, "test");
  }

  // Trains `parallel` on every rank of the job and the same config alone on rank 0; compares.
  // `model_extra`: model fields for both (e.g. the vocabulary padding a TP size implies).
  void expect_same_as_one_process(const std::string& name, const std::string& parallel,
                                  const std::string& model_extra = "",
                                  const std::string& single_extra = "") {
    CpuOps ops(DType::f32, 1);
    TrainOptions o;
    o.resume = "none";
    o.progress = false;
    o.world = &world();
    const LoadedConfig together = config(name + "_dp", parallel, model_extra);
    const TrainSummary s = train(together, ops, o);
    EXPECT_EQ(s.last_step, 10);
    world().barrier();
    if (world().rank() != 0) return;
    LocalCommunicator alone;
    o.world = &alone;
    const LoadedConfig single = config(name + "_one", "", model_extra + " " + single_extra);
    train(single, ops, o);
    const auto a = test::losses_as_written(join_path(dir_, name + "_dp/metrics.jsonl"));
    const auto b = test::losses_as_written(join_path(dir_, name + "_one/metrics.jsonl"));
    ASSERT_EQ(a.size(), 10u);
    ASSERT_EQ(b.size(), 10u);
    double worst_loss = 0;
    for (const auto& [step, text] : b) {
      const double loss = std::stod(text), got = std::stod(a.at(step));
      EXPECT_NEAR(got, loss, 1e-5 * std::abs(loss)) << name << " step " << step;
      worst_loss = std::max(worst_loss, std::abs(got - loss) / std::abs(loss));
    }
    std::printf("%s losses: largest relative difference %.3g over 10 steps\n", name.c_str(),
                worst_loss);
    const auto ta = tensors_of(join_path(dir_, name + "_dp"), together, ops);
    const auto tb = tensors_of(join_path(dir_, name + "_one"), single, ops);
    ASSERT_EQ(ta.size(), tb.size());
    // The relative error of the whole vector of each kind (parameters, first and second
    // moments): ‖a − b‖₂ / ‖b‖₂. Not tensor by tensor: DAPE's second-layer bias has an
    // identically zero gradient (a constant added to every logit of a row does not change the
    // softmax), so it moves only with rounding noise, which Adam scales up to steps of about lr.
    for (const std::string kind : {"", "optim.m.", "optim.v."}) {
      double diff2 = 0, norm2 = 0, worst = 0;
      std::string worst_tensor;
      for (const auto& [tensor, want] : tb) {
        const bool of_kind =
            kind.empty() ? tensor.rfind("optim.", 0) != 0 : tensor.rfind(kind, 0) == 0;
        if (!of_kind) continue;
        const auto& got = ta.at(tensor);
        ASSERT_EQ(got.size(), want.size()) << tensor;
        for (size_t i = 0; i < want.size(); ++i) {
          const double d = double{got[i]} - want[i];
          diff2 += d * d;
          norm2 += double{want[i]} * want[i];
          if (std::abs(d) > worst) {
            worst = std::abs(d);
            worst_tensor = tensor;
          }
        }
      }
      ASSERT_GT(norm2, 0) << kind;
      const double relative = std::sqrt(diff2 / norm2);
      EXPECT_LE(relative, 1e-5) << name << " " << (kind.empty() ? "parameters" : kind)
                                << ": relative error " << relative << "; largest difference "
                                << worst << " in " << worst_tensor;
      std::printf("%s %s: relative error %.3g (largest difference %.3g in %s)\n", name.c_str(),
                  kind.empty() ? "parameters" : kind.c_str(), relative, worst,
                  worst_tensor.c_str());
    }
  }

  std::unique_ptr<test::SharedWordCorpus> corpus_;
  std::string dir_;
};

TEST_F(DataParallelTraining, MatchesOneProcessWithBucketsSentDuringBackward) {
  expect_same_as_one_process("buckets", "bucket_mb: 0.004");
}

TEST_F(DataParallelTraining, MatchesOneProcessWithOneBucket) {
  expect_same_as_one_process("one_bucket", "bucket_mb: 0");
}

TEST_F(DataParallelTraining, MatchesOneProcessWithShardedOptimizerState) {
  expect_same_as_one_process("zero1", "zero_stage: 1 bucket_mb: 0.004");
}

// Tensor parallel over every rank (4 heads: 1, 2 or 4 ranks). The one-process model is padded
// like the cut one (its vocabulary to a multiple of 128 · tp), so that the whole tensors have the
// same shapes; the padding rows take no part in the loss.
TEST_F(DataParallelTraining, TensorParallelMatchesOneProcess) {
  const int n = world().size();
  if (4 % n != 0) GTEST_SKIP() << "4 heads cannot be cut over " << n << " ranks";
  const std::string pad = n > 1 ? fmt::format("vocab_pad_multiple: {}", 128 * n) : std::string();
  expect_same_as_one_process("tp", fmt::format("tp: {}", n), "", pad);
  expect_same_as_one_process("tp_ref", fmt::format("tp: {}", n), "attention: \"reference\"", pad);
}

// Both at once: 2 replicas of a model cut over 2 ranks (4 processes), with ZeRO-1 too.
TEST_F(DataParallelTraining, DataAndTensorParallelMatchOneProcess) {
  if (world().size() != 4) GTEST_SKIP() << "needs 4 ranks (2 × 2), have " << world().size();
  const std::string pad = "vocab_pad_multiple: 256";
  expect_same_as_one_process("dp2tp2", "tp: 2 bucket_mb: 0.004", "", pad);
  expect_same_as_one_process("dp2tp2_zero1", "tp: 2 zero_stage: 1", "", pad);
}

}  // namespace
}  // namespace dape
