/*
 * Scale-out throughput of training steps, run under mpirun (bench/scaling.sh drives it over
 * process counts and TP sizes, weak and strong): synthetic tokens (no disk), a model from a
 * preset, the trainer's own pieces (Decoder, GradientSync over data-parallel ranks, TP-aware
 * clipping, AdamW), and every collective timed.
 *
 *   mpirun -np 2 build/bench/scaling --tp 1 --per-rank-batch 8     # weak: 8 samples per replica
 *   mpirun -np 2 build/bench/scaling --tp 2 --global-batch 16      # strong: 16 samples in all
 *
 * Rank 0 prints one JSON object per run: world, dp, tp, batch, tokens/s (all ranks and per
 * rank), the step time split into compute and exposed communication (time inside collective
 * calls, which block on the CPU path, so all of it is exposed), MFU when --peak-gflops (per
 * rank) is given, and the model FLOPs per token used for it.
 *
 * Synthetic data: sample k of step s is drawn from Rng(seed, s·2^32 + k), so a global batch is
 * the same whatever the number of data-parallel ranks; each replica takes its slice.
 */
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "common/check.h"
#include "common/rng.h"
#include "core/model/decoder.h"
#include "core/optim/adamw_optimizer.h"
#include "core/train/gradient_sync.h"
#include "kernels/cpu/cpu_ops.h"
#include "parallel/comm.h"
#include "parallel/topology.h"

using namespace dape;

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

template <class F>
void add_time(double* seconds, F&& f) {
  const auto t = Clock::now();
  f();
  *seconds += since(t);
}

// A started collective whose tests and wait are timed.
class TimedPending final : public PendingCollective {
 public:
  TimedPending(std::unique_ptr<PendingCollective> inner, double* seconds)
      : inner_(std::move(inner)), seconds_(seconds) {}
  ~TimedPending() override {
    add_time(seconds_, [&] { inner_.reset(); });
  }
  bool test() override {
    bool done = false;
    add_time(seconds_, [&] { done = inner_->test(); });
    return done;
  }
  void wait() override {
    add_time(seconds_, [&] { inner_->wait(); });
  }

 private:
  std::unique_ptr<PendingCollective> inner_;
  double* seconds_;
};

// Forwards every collective to `inner` and adds the time spent in its calls to `*seconds`: the
// communication the caller waited for (a non-blocking one counts only while started, tested or
// waited on).
class TimedCommunicator final : public Communicator {
 public:
  TimedCommunicator(Communicator& inner, double* seconds) : inner_(inner), seconds_(seconds) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  std::string name() const override { return inner_.name(); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    return inner_.split(color, key);
  }
  void all_reduce_sum(const Tensor& x) override {
    timed([&] { inner_.all_reduce_sum(x); });
  }
  std::unique_ptr<PendingCollective> start_all_reduce_sum(const Tensor& x) override {
    std::unique_ptr<PendingCollective> p;
    timed([&] { p = inner_.start_all_reduce_sum(x); });
    return std::make_unique<TimedPending>(std::move(p), seconds_);
  }
  void all_reduce_max(const Tensor& x) override {
    timed([&] { inner_.all_reduce_max(x); });
  }
  double all_reduce_max(double v) override {
    timed([&] { v = inner_.all_reduce_max(v); });
    return v;
  }
  void all_gather(const Tensor& out, const Tensor& in) override {
    timed([&] { inner_.all_gather(out, in); });
  }
  void reduce_scatter_sum(const Tensor& out, const Tensor& in) override {
    timed([&] { inner_.reduce_scatter_sum(out, in); });
  }
  void broadcast(const Tensor& x, int root) override {
    timed([&] { inner_.broadcast(x, root); });
  }
  void barrier() override {
    timed([&] { inner_.barrier(); });
  }
  double all_reduce_sum(double v) override {
    timed([&] { v = inner_.all_reduce_sum(v); });
    return v;
  }
  void all_reduce_sum(int64_t* values, int64_t n) override {
    timed([&] { inner_.all_reduce_sum(values, n); });
  }
  std::vector<std::string> all_gather_bytes(const std::string& mine) override {
    return inner_.all_gather_bytes(mine);
  }
  std::string broadcast_bytes(const std::string& bytes, int root) override {
    return inner_.broadcast_bytes(bytes, root);
  }
  [[noreturn]] void abort(int code) override {
    inner_.abort(code);
    std::abort();  // not reached: the inner abort does not return either
  }

 private:
  template <class F>
  void timed(F&& f) {
    add_time(seconds_, std::forward<F>(f));
  }
  Communicator& inner_;
  double* seconds_;
};

struct Preset {
  int layers, d_model, heads, vocab;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("dape scale-out throughput (run under mpirun; see bench/scaling.sh)");
  std::string preset = "demo", position = "kerple", attention = "fused";
  int tp_size = 1, micro = 4, per_rank_batch = 0, global_batch = 0, seq = 128, steps = 5,
      warmup = 2, threads = 1, width = 32;
  double peak_gflops = 0, bucket_mb = 25;
  bool no_dape = false;
  app.add_option("--preset", preset, "Model: demo (4 × 256, 8 heads) | small (2 × 128) | 125m")
      ->capture_default_str();
  app.add_option("--tp", tp_size, "Tensor-parallel size (divides the number of processes)")
      ->capture_default_str();
  app.add_option("--micro", micro, "Samples per micro-batch")->capture_default_str();
  app.add_option("--per-rank-batch", per_rank_batch,
                 "Weak scaling: samples per data-parallel replica per step");
  app.add_option("--global-batch", global_batch, "Strong scaling: samples per step in all");
  app.add_option("--seq", seq, "Training length")->capture_default_str();
  app.add_option("--steps", steps, "Timed steps")->capture_default_str();
  app.add_option("--warmup", warmup, "Untimed steps first")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads per rank")->capture_default_str();
  app.add_option("--bucket-mb", bucket_mb, "Gradient bucket size")->capture_default_str();
  app.add_option("--peak-gflops", peak_gflops, "Per-rank peak GFLOP/s, for MFU (0: unknown)");
  app.add_option("--position", position, "Position scheme")->capture_default_str();
  app.add_option("--attention", attention, "fused | reference")->capture_default_str();
  app.add_flag("--no-dape", no_dape, "Without DAPE");
  CLI11_PARSE(app, argc, argv);

  auto world_ptr = make_world_communicator();
  Communicator& world = *world_ptr;
  try {
    const Preset p = preset == "125m"    ? Preset{12, 768, 12, 50304}
                     : preset == "small" ? Preset{2, 128, 4, 257}
                                         : Preset{4, 256, 8, 257};
    ParallelGroups groups = make_parallel_groups(world, tp_size);
    double comm_seconds = 0;
    TimedCommunicator tp(*groups.tp, &comm_seconds);
    TimedCommunicator dp(*groups.dp, &comm_seconds);
    const int replicas = dp.size();
    if (per_rank_batch > 0) global_batch = per_rank_batch * replicas;
    if (global_batch <= 0) global_batch = micro * replicas;
    if (global_batch % (micro * replicas) != 0)
      fail("global batch {} is not a multiple of micro {} × {} replicas", global_batch, micro,
           replicas);
    const int accum = global_batch / replicas / micro;

    CpuOps ops(DType::f32, threads);
    ModelSpec s;
    s.layers = p.layers;
    s.d_model = p.d_model;
    s.heads = p.heads;
    s.head_dim = p.d_model / p.heads;
    s.mlp_hidden = 4 * p.d_model;
    s.vocab = p.vocab;
    s.tp = tp.size();
    s.tp_rank = tp.rank();
    const int mult = tp.size() > 1 ? 128 * tp.size() : 64;
    s.padded_vocab = (p.vocab + mult - 1) / mult * mult;
    if (!parse_position_scheme(position, &s.position)) fail("unknown --position '{}'", position);
    s.dape = !no_dape;
    s.dape_width = width;
    s.max_positions = std::max(2048, seq);
    s.attention = attention == "fused" ? AttentionImpl::fused : AttentionImpl::reference;
    Decoder model(s, ops, true, &tp);
    model.initialize(1);
    AdamW optimizer(ops, model.params(), {});
    GradientSync sync(dp, model.params(), bucket_mb);

    const int64_t n = int64_t{micro} * seq;
    std::vector<int32_t> tokens(n), targets(n);
    const double grad_scale = 1.0 / (static_cast<double>(global_batch) * seq);
    double step_seconds = 0, comm_total = 0;
    for (int step = 0; step < warmup + steps; ++step) {
      comm_seconds = 0;
      const auto t0 = Clock::now();
      model.params().zero_grads(ops);
      for (int m = 0; m < accum; ++m) {
        for (int b = 0; b < micro; ++b) {
          const int64_t sample = int64_t{dp.rank()} * (global_batch / replicas) + m * micro + b;
          Rng rng(7, (static_cast<uint64_t>(step) << 32) + static_cast<uint64_t>(sample));
          for (int t = 0; t < seq; ++t) {
            tokens[b * seq + t] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(p.vocab)));
            targets[b * seq + t] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(p.vocab)));
          }
        }
        const bool last = m == accum - 1 && replicas > 1;
        if (last) {
          sync.begin();
          model.set_gradient_hook([&](const Tensor& g) { sync.mark_ready(g); });
        }
        model.forward(tokens.data(), targets.data(), micro, seq, true, grad_scale);
        model.backward();
        if (last) {
          model.set_gradient_hook({});
          sync.finish();
        }
      }
      clip_grad_norm(ops, model.params(), tp, 1.0);
      optimizer.step(1e-4, step + 1);
      ops.synchronize();
      if (step >= warmup) {
        step_seconds += since(t0);
        comm_total += comm_seconds;
      }
    }
    int64_t whole_params = 0;
    for (const auto& v : model.params().views())
      whole_params += v.spec.split.is_split() ? v.spec.split.global.numel() : v.spec.shape.numel();
    // Averaged over ranks (they wait for each other in the collectives).
    const double step_s = world.all_reduce_sum(step_seconds) / world.size() / steps;
    const double comm_s = world.all_reduce_sum(comm_total) / world.size() / steps;
    const double tokens_per_s = static_cast<double>(global_batch) * seq / step_s;
    const double flops_per_token = model.training_flops_per_token(seq);
    const double gflops_per_rank = tokens_per_s * flops_per_token / 1e9 / world.size();
    if (world.rank() == 0) {
      std::printf(
          "{\"world\": %d, \"dp\": %d, \"tp\": %d, \"preset\": \"%s\", \"threads_per_rank\": %d, "
          "\"micro\": %d, \"global_batch\": %d, \"seq\": %d, \"params\": %lld, "
          "\"tokens_per_s\": %.1f, \"tokens_per_s_per_rank\": %.1f, \"step_s\": %.5f, "
          "\"compute_s\": %.5f, \"comm_s\": %.5f, \"gflops_per_rank\": %.2f, "
          "\"flops_per_token\": %.4g, \"mfu\": %s}\n",
          world.size(), replicas, tp.size(), preset.c_str(), threads, micro, global_batch, seq,
          static_cast<long long>(whole_params), tokens_per_s, tokens_per_s / world.size(), step_s,
          step_s - comm_s, comm_s, gflops_per_rank, flops_per_token,
          peak_gflops > 0 ? fmt::format("{:.4f}", gflops_per_rank / peak_gflops).c_str() : "null");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] error: %s\n", world.rank(), e.what());
    if (world.size() > 1) world.abort(1);
    return 1;
  }
  return 0;
}
