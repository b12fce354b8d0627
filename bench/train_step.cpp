/*
 * Training-step benchmark: tokens/s and achieved GFLOP/s of one full optimizer step (forward,
 * backward, gradient clipping, AdamW) on the CPU, for the demo model and the paper's 125M model
 * with DAPE-Kerple at training length 128 (or a model given on the command line).
 *
 *   bench/train_step                       # both presets
 *   bench/train_step --preset demo --steps 10
 *   bench/train_step --preset demo --profile   # time per op
 *   bench/train_step --layers 4 --d-model 256 --heads 8 --position alibi --no-dape --batch 16 --seq
 * 128
 *
 * FLOPs counted: 6 × (matmul parameters, LM head included) per token plus the causal attention
 * core (Q·Kᵀ, P·V, and f when DAPE is on) × 3 for forward and backward (Decoder::
 * training_flops_per_token). Threads: OMP_NUM_THREADS or --threads.
 */
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <vector>

#include "common/rng.h"
#include "core/model/decoder.h"
#include "core/optim/adamw_optimizer.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/profiling_ops.h"

using namespace dape;

struct Preset {
  std::string name;
  int layers, d_model, heads, vocab, batch, seq;
};

static void run(const Preset& p, const std::string& position, bool dape_on, int width, int steps,
                int threads, const std::string& attention, bool profile) {
  CpuOps cpu(DType::f32, threads);
  ProfilingOps profiler(cpu);
  Ops& ops = profile ? static_cast<Ops&>(profiler) : cpu;
  ModelSpec s;
  s.layers = p.layers;
  s.d_model = p.d_model;
  s.heads = p.heads;
  s.head_dim = p.d_model / p.heads;
  s.mlp_hidden = 4 * p.d_model;
  s.vocab = p.vocab;
  const int mult = p.vocab > 1000 ? 128 : 64;
  s.padded_vocab = (p.vocab + mult - 1) / mult * mult;
  parse_position_scheme(position, &s.position);
  s.dape = dape_on;
  s.dape_width = width;
  s.max_positions = std::max(2048, p.seq);
  s.attention = attention == "fused" ? AttentionImpl::fused : AttentionImpl::reference;
  Decoder model(s, ops);
  model.initialize(1);
  AdamW opt(ops, model.params(), {});
  Rng rng(3, 0);
  const int64_t n = int64_t{p.batch} * p.seq;
  std::vector<int32_t> tok(n), tgt(n);
  for (int64_t i = 0; i < n; ++i) {
    tok[i] = static_cast<int32_t>(rng.below(p.vocab));
    tgt[i] = static_cast<int32_t>(rng.below(p.vocab));
  }
  auto step = [&](int64_t t) {
    model.params().zero_grads(ops);
    model.forward(tok.data(), tgt.data(), p.batch, p.seq, true, 1.0 / n);
    model.backward();
    clip_grad_norm(ops, model.params().grads(), 1.0);
    opt.step(1e-4, t);
    ops.synchronize();
  };
  step(1);  // warm-up
  profiler.reset();
  std::vector<double> times;
  for (int i = 0; i < steps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    step(i + 2);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  const double tok_s = n / median;
  const double gflops = tok_s * model.training_flops_per_token(p.seq) / 1e9;
  std::printf("%-6s %3d %5d %4d %6d %-7s %-4s %4d %5d %3d  %8.3f %10.0f %9.1f  %7.1f\n",
              p.name.c_str(), p.layers, p.d_model, p.heads, p.vocab, position.c_str(),
              dape_on ? "yes" : "no", p.seq, p.batch, steps, median, tok_s, gflops,
              model.params().size() / 1e6);
  if (profile) std::printf("\nper-op time over %d steps:\n%s\n", steps, profiler.report().c_str());
  std::fflush(stdout);
}

int main(int argc, char** argv) {
  CLI::App app{"Training-step benchmark (tokens/s, achieved GFLOP/s)"};
  std::string preset = "all", position = "kerple", attention = "fused";
  int layers = 0, d_model = 256, heads = 8, vocab = 257, batch = 16, seq = 128, steps = 5,
      threads = 0, width = 32;
  bool no_dape = false, profile = false;
  app.add_option("--preset", preset, "demo | 125m | all (ignored when --layers is given)");
  app.add_option("--layers", layers, "Custom model: layers (0: use the presets)");
  app.add_option("--d-model", d_model);
  app.add_option("--heads", heads);
  app.add_option("--vocab", vocab);
  app.add_option("--batch", batch);
  app.add_option("--seq", seq);
  app.add_option("--position", position, "none|learned|rope|alibi|kerple|fire");
  app.add_option("--mlp-width", width, "DAPE's W");
  app.add_flag("--no-dape", no_dape);
  app.add_option("--attention", attention, "reference|fused");
  app.add_option("--steps", steps, "Timed steps (median reported)");
  app.add_option("--threads", threads, "CPU threads (0: OMP default)");
  app.add_flag("--profile", profile, "Also print time per op (synchronizes after every op)");
  CLI11_PARSE(app, argc, argv);

  std::vector<Preset> presets;
  if (layers > 0) presets.push_back({"custom", layers, d_model, heads, vocab, batch, seq});
  if (layers == 0 && (preset == "demo" || preset == "all"))
    presets.push_back({"demo", 4, 256, 8, 257, 16, 128});
  if (layers == 0 && (preset == "125m" || preset == "all"))
    presets.push_back({"125m", 12, 768, 12, 50257, 8, 128});
  std::printf("%-6s %3s %5s %4s %6s %-7s %-4s %4s %5s %3s  %8s %10s %9s  %7s\n", "model", "L", "d",
              "H", "vocab", "pos", "dape", "T", "batch", "n", "step_s", "tokens/s", "GFLOP/s",
              "Mparams");
  for (const auto& p : presets)
    run(p, position, !no_dape, width, p.name == "125m" && steps > 3 ? 3 : steps, threads, attention,
        profile);
  return 0;
}
