// Sharded checkpoints under mpirun with 4 ranks (DP 2 × TP 2, ZeRO-1):
//  - same layout: 30 steps straight and 15 + resume + 15 give bitwise the same losses and final
//    parameters and moments;
//  - another layout (DP 1 × TP 1, DP 4 × TP 1 with ZeRO-1, DP 1 × TP 4): the loaded parameters
//    and moments are exactly the saved ones, cut as TensorSplit::local_of cuts them (vocabulary
//    rows beyond those saved at their initial values, moments zero), and the next 10 steps'
//    losses match the uninterrupted run within 1e-5 relative.
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
#include "core/model/model_spec.h"
#include "core/optim/adamw_optimizer.h"
#include "core/train/trainer.h"
#include "kernels/cpu/cpu_ops.h"
#include "parallel/comm.h"
#include "parallel/topology.h"
#include "tests/mpi/mpi_test_util.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

using test::world;

// A whole (uncut) model's values and moments as host vectors by name.
struct WholeTensors {
  std::map<std::string, std::vector<float>> values, m, v;
  std::map<std::string, Shape> shapes;
};

// The checkpoint's tensors, read into an uncut model padded as at `saved_tp`.
WholeTensors read_whole(const std::string& ckpt, const config::Model& mc, int vocab, int saved_tp,
                        Ops& ops) {
  ModelSpec spec = ModelSpec::from_config(mc, vocab, saved_tp);
  spec.tp = 1;
  spec.tp_rank = 0;
  ParamStore store;
  spec.register_params(store);
  store.allocate(ops, false);
  AdamW opt(ops, store, {});
  load_checkpoint(open_checkpoint(ckpt), ops, store, &opt);
  WholeTensors w;
  for (const auto& v : store.views()) {
    w.values[v.spec.name] = download<float>(ops, v.value);
    w.m[v.spec.name] = download<float>(ops, opt.m().slice(v.offset, v.spec.shape));
    w.v[v.spec.name] = download<float>(ops, opt.v().slice(v.offset, v.spec.shape));
    w.shapes[v.spec.name] = v.spec.shape;
  }
  return w;
}

// `saved` (rows × row elements) put into a tensor of `rows` rows that starts as `start`.
std::vector<float> with_rows(std::vector<float> start, const Shape& to,
                             const std::vector<float>& saved, const Shape& from) {
  const int64_t row = to.numel() / to[0];
  const int64_t rows = std::min(to[0], from[0]);
  std::copy(saved.begin(), saved.begin() + rows * row, start.begin());
  return start;
}

class ShardedCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    if (world().size() != 4) GTEST_SKIP() << "needs 4 ranks (DP 2 × TP 2), have " << world().size();
    corpus_ = std::make_unique<test::SharedWordCorpus>(9, 11);
    dir_ = corpus_->dir();
  }
  void TearDown() override {
    if (world().size() == 4) world().barrier();
  }

  LoadedConfig config(const std::string& run, const std::string& parallel) {
    const std::string text = fmt::format(R"(
      run_dir: "{}"
      data {{ path: "{}" }}
      model {{ layers: 2 d_model: 32 heads: 4 position: "kerple" dape {{ enabled: true mlp_width: 8 }} }}
      train {{ steps: 30 seq_len: 32 micro_batch: 2 global_batch: 8 lr: 3e-3 min_lr: 3e-4 seed: 77 }}
      parallel {{ {} }}
      checkpoint {{ interval: 15 keep_last: 0 }}
      eval {{ at_end: false }}
    )",
                                         join_path(dir_, run), join_path(dir_, "data"), parallel);
    return parse_config_text(text, "test");
  }

  TrainSummary run(const LoadedConfig& c, Communicator& comm, const std::string& resume,
                   int64_t stop_at = 0) {
    CpuOps ops(DType::f32, 1);
    TrainOptions o;
    o.resume = resume;
    o.stop_at_step = stop_at;
    o.progress = false;
    o.world = &comm;
    return train(c, ops, o);
  }

  // Loads the straight run's step-15 checkpoint at `tp` (ZeRO-1 over the data-parallel ranks
  // when `zero`) on the ranks of `comm` and compares every value with the saved whole tensors.
  void expect_loads_exactly(Communicator& comm, int tp, bool zero) {
    CpuOps ops(DType::f32, 1);
    const LoadedConfig c = config("straight", "");
    const data::TokenDataset dataset(c.msg.data().path(), {});
    const int vocab = dataset.vocab_size();
    const std::string ckpt = join_path(dir_, "straight/checkpoints/step_00000015");
    const WholeTensors saved = read_whole(ckpt, c.msg.model(), vocab, 2, ops);

    ParallelGroups groups = make_parallel_groups(comm, tp);
    const ModelSpec spec = ModelSpec::from_config(c.msg.model(), vocab, tp, groups.tp->rank());
    ParamStore store;
    spec.register_params(store);
    store.allocate(ops, false);
    store.initialize(ops, c.msg.train().seed());
    AdamW opt(ops, store, {}, zero ? groups.dp.get() : nullptr);
    const TrainingState st =
        load_checkpoint(open_checkpoint(ckpt), ops, store, &opt, {spec.vocab, spec.padded_vocab});
    EXPECT_EQ(st.step, 15);

    // The uncut model at the new padding, initialized: what rows beyond the saved ones hold.
    ModelSpec whole_spec = spec;
    whole_spec.tp = 1;
    whole_spec.tp_rank = 0;
    ParamStore init;
    whole_spec.register_params(init);
    init.allocate(ops, false);
    init.initialize(ops, c.msg.train().seed());

    std::vector<float> want_m(static_cast<size_t>(store.size())), want_v(want_m.size());
    int64_t compared = 0;
    for (const auto& v : store.views()) {
      const std::string& name = v.spec.name;
      const ParamView& iv = init.view(name);
      const Shape& from = saved.shapes.at(name);
      const std::vector<float> zeros(static_cast<size_t>(iv.spec.shape.numel()), 0.0f);
      auto cut = [&](const std::vector<float>& whole) { return local_of(v.spec.split, whole); };
      const auto want_value = cut(
          with_rows(download<float>(ops, iv.value), iv.spec.shape, saved.values.at(name), from));
      EXPECT_EQ(download<float>(ops, v.value), want_value) << name << " at tp " << tp;
      const auto m = cut(with_rows(zeros, iv.spec.shape, saved.m.at(name), from));
      const auto vv = cut(with_rows(zeros, iv.spec.shape, saved.v.at(name), from));
      std::copy(m.begin(), m.end(), want_m.begin() + v.offset);
      std::copy(vv.begin(), vv.end(), want_v.begin() + v.offset);
      compared += v.spec.shape.numel();
    }
    const auto b = want_m.begin() + opt.shard_begin(), e = want_m.begin() + opt.shard_end();
    EXPECT_EQ(download<float>(ops, opt.m_shard()), std::vector<float>(b, e));
    EXPECT_EQ(
        download<float>(ops, opt.v_shard()),
        std::vector<float>(want_v.begin() + opt.shard_begin(), want_v.begin() + opt.shard_end()));
    EXPECT_EQ(compared, store.size());
  }

  std::unique_ptr<test::SharedWordCorpus> corpus_;
  std::string dir_;
};

TEST_F(ShardedCheckpoint, SameLayoutResumeIsBitwiseIdentical) {
  const std::string layout = "tp: 2 zero_stage: 1 bucket_mb: 0.004";
  run(config("straight", layout), world(), "none");
  run(config("resumed", layout), world(), "none", 15);
  const TrainSummary s = run(config("resumed", layout), world(), "auto");
  EXPECT_EQ(s.first_step, 15);
  EXPECT_EQ(s.last_step, 30);
  world().barrier();
  if (world().rank() != 0) return;
  const auto a = test::losses_as_written(join_path(dir_, "straight/metrics.jsonl"));
  const auto b = test::losses_as_written(join_path(dir_, "resumed/metrics.jsonl"));
  ASSERT_EQ(a.size(), 30u);
  EXPECT_EQ(a, b);
  // Every rank wrote a shard: TP pieces and ZeRO-1 moment ranges.
  const CheckpointRef ref = open_checkpoint(join_path(dir_, "resumed"));
  EXPECT_EQ(ref.manifest.files_size(), 4);
  EXPECT_EQ(ref.manifest.dp(), 2);
  EXPECT_EQ(ref.manifest.tp(), 2);
  CpuOps ops(DType::f32, 1);
  const LoadedConfig c = config("straight", "");
  const int vocab = data::TokenDataset(c.msg.data().path(), {}).vocab_size();
  const WholeTensors x = read_whole(join_path(dir_, "straight"), c.msg.model(), vocab, 2, ops);
  const WholeTensors y = read_whole(join_path(dir_, "resumed"), c.msg.model(), vocab, 2, ops);
  EXPECT_EQ(x.values, y.values);
  EXPECT_EQ(x.m, y.m);
  EXPECT_EQ(x.v, y.v);
  EXPECT_NO_THROW(inspect_checkpoint(join_path(dir_, "resumed"), true));
}

TEST_F(ShardedCheckpoint, OtherLayoutsLoadExactlyAndContinueTheRun) {
  run(config("straight", "tp: 2 zero_stage: 1 bucket_mb: 0.004"), world(), "none", 25);
  const std::string ckpt = join_path(dir_, "straight/checkpoints/step_00000015");
  const auto straight = test::losses_as_written(join_path(dir_, "straight/metrics.jsonl"));
  struct Layout {
    std::string name, parallel;
    int tp;
    bool zero, alone;
  };
  const Layout layouts[] = {{"dp1tp1", "", 1, false, true},
                            {"dp4tp1", "zero_stage: 1", 1, true, false},
                            {"dp1tp4", "tp: 4", 4, false, false}};
  LocalCommunicator one;
  for (const Layout& l : layouts) {
    if (l.alone && world().rank() != 0) {
      world().barrier();
      continue;
    }
    Communicator& comm = l.alone ? static_cast<Communicator&>(one) : world();
    expect_loads_exactly(comm, l.tp, l.zero);
    const TrainSummary s = run(config(l.name, l.parallel), comm, ckpt, 25);
    EXPECT_EQ(s.first_step, 15) << l.name;
    EXPECT_EQ(s.last_step, 25) << l.name;
    world().barrier();
    if (world().rank() != 0) continue;
    const auto got = test::losses_as_written(join_path(dir_, l.name + "/metrics.jsonl"));
    ASSERT_EQ(got.size(), 10u) << l.name;
    double worst = 0;
    for (const auto& [step, text] : got) {
      const double want = std::stod(straight.at(step)), have = std::stod(text);
      EXPECT_NEAR(have, want, 1e-5 * std::abs(want)) << l.name << " step " << step;
      worst = std::max(worst, std::abs(have - want) / std::abs(want));
    }
    std::printf(
        "resumed at %s: steps 16-25 losses within %.3g relative of the run saved at DP 2 "
        "x TP 2\n",
        l.name.c_str(), worst);
  }
}

}  // namespace
}  // namespace dape
