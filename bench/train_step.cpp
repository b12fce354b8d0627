/*
 * Training-step benchmark: tokens/s and achieved FLOP/s of one full optimizer step (forward,
 * backward, gradient clipping, AdamW) on the CPU or on a CUDA device, for the demo model and the
 * paper's 125M model with DAPE-Kerple at training length 128, a model given on the command line,
 * or the model of a config file.
 *
 *   bench/train_step                       # both presets
 *   bench/train_step --preset demo --steps 10
 *   bench/train_step --preset demo --profile   # time per op
 *   bench/train_step --layers 4 --d-model 256 --heads 8 --position alibi --no-dape --batch 16 --seq
 * 128
 *   bench/train_step --device cuda --config configs/paper/125m_kerple_dape.pbtxt --seq 512
 *
 * FLOPs counted: 6 × (matmul parameters, LM head included) per token plus the causal attention
 * core (Q·Kᵀ, P·V, and f when DAPE is on) × 3 for forward and backward (Decoder::
 * training_flops_per_token). Threads: OMP_NUM_THREADS or --threads.
 *
 * On CUDA (--device cuda; --precision bf16 by default, the training mode) the step ends with
 * Ops::synchronize(), so its time covers the device's work. The figures are tokens/s, achieved
 * TFLOP/s and MFU = achieved model FLOP/s ÷ peak, with the peak from --peak-tflops: by default
 * 989 TFLOP/s, the H200's (SXM) dense bf16 tensor-core peak from NVIDIA's spec sheet (1979 with
 * 2:4 sparsity, which dense training does not use). For fp32 runs pass the matching peak.
 *
 * --config takes the model section of an experiment config (following its `base`), and the
 * batch and length from its train section (micro_batch, seq_len) unless --batch or --seq is
 * given; a config without model.vocab_size uses --vocab.
 */
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_ops.h"
#include "common/rng.h"
#include "core/config/config.h"
#include "core/model/decoder.h"
#include "core/optim/adamw_optimizer.h"
#include "kernels/cuda_device.h"
#include "kernels/profiling_ops.h"

using namespace dape;

namespace {

struct Workload {
  std::string name;
  ModelSpec spec;
  int batch = 0, seq = 0;
};

struct Device {
  std::string device = "cpu", precision;  // precision "": fp32 on the CPU, bf16 on CUDA
  int threads = 0;
  double peak_tflops = 989.0;

  bool cuda() const { return device == "cuda"; }
};

// The preset or custom models: the shapes given, MLP 4·d, vocabulary padded to 64 (128 above
// 1000 tokens).
ModelSpec model_spec(int layers, int d_model, int heads, int vocab, int seq,
                     const std::string& position, bool dape_on, int width,
                     const std::string& attention) {
  ModelSpec s;
  s.layers = layers;
  s.d_model = d_model;
  s.heads = heads;
  s.head_dim = d_model / heads;
  s.mlp_hidden = 4 * d_model;
  s.vocab = vocab;
  const int mult = vocab > 1000 ? 128 : 64;
  s.padded_vocab = (vocab + mult - 1) / mult * mult;
  if (!parse_position_scheme(position, &s.position))
    fail("--position {}: expected none|learned|rope|alibi|kerple|fire", position);
  s.dape = dape_on;
  s.dape_width = width;
  s.max_positions = std::max(2048, seq);
  s.attention = attention == "fused" ? AttentionImpl::fused : AttentionImpl::reference;
  return s;
}

void run(Ops& backend, const Workload& w, const Device& d, int steps, bool profile) {
  ProfilingOps profiler(backend);
  Ops& ops = profile ? static_cast<Ops&>(profiler) : backend;
  const ModelSpec& s = w.spec;
  Decoder model(s, ops);
  model.initialize(1);
  AdamW opt(ops, model.params(), {});
  Rng rng(3, 0);
  const int64_t n = int64_t{w.batch} * w.seq;
  std::vector<int32_t> tok(n), tgt(n);
  for (int64_t i = 0; i < n; ++i) {
    tok[i] = static_cast<int32_t>(rng.below(s.vocab));
    tgt[i] = static_cast<int32_t>(rng.below(s.vocab));
  }
  auto step = [&](int64_t t) {
    model.params().zero_grads(ops);
    model.forward(tok.data(), tgt.data(), w.batch, w.seq, true, 1.0 / n);
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
  const double flops = tok_s * model.training_flops_per_token(w.seq);
  std::printf("%-6s %3d %5d %4d %6d %-7s %-4s %4d %5d %3d  %8.3f %10.0f", w.name.c_str(), s.layers,
              s.d_model, s.heads, s.vocab, position_scheme_name(s.position), s.dape ? "yes" : "no",
              w.seq, w.batch, steps, median, tok_s);
  if (d.cuda()) {
    std::printf(" %9.1f %6.1f%%  %7.1f\n", flops / 1e12, 100.0 * flops / (d.peak_tflops * 1e12),
                model.params().size() / 1e6);
  } else {
    std::printf(" %9.1f  %7.1f\n", flops / 1e9, model.params().size() / 1e6);
  }
  if (profile) std::printf("\nper-op time over %d steps:\n%s\n", steps, profiler.report().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Training-step benchmark (tokens/s, achieved FLOP/s, MFU on CUDA)"};
  std::string preset = "all", position = "kerple", attention = "fused", config;
  int layers = 0, d_model = 256, heads = 8, vocab = 257, batch = 16, seq = 128, steps = 5,
      width = 32;
  bool no_dape = false, profile = false;
  Device dev;
  app.add_option("--preset", preset, "demo | 125m | all (ignored when --layers is given)");
  app.add_option("--layers", layers, "Custom model: layers (0: use the presets)");
  app.add_option("--d-model", d_model);
  app.add_option("--heads", heads);
  app.add_option("--vocab", vocab);
  auto* batch_opt = app.add_option("--batch", batch);
  auto* seq_opt = app.add_option("--seq", seq);
  app.add_option("--position", position, "none|learned|rope|alibi|kerple|fire");
  app.add_option("--mlp-width", width, "DAPE's W");
  app.add_flag("--no-dape", no_dape);
  app.add_option("--attention", attention, "reference|fused");
  app.add_option("--config", config,
                 "Model (and batch, length) of an experiment config instead of the presets");
  app.add_option("--steps", steps, "Timed steps (median reported)");
  app.add_option("--threads", dev.threads, "CPU threads (0: OMP default)");
  app.add_option("--device", dev.device, "cpu|cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--precision", dev.precision, "fp32|bf16 (default: fp32 on cpu, bf16 on cuda)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--peak-tflops", dev.peak_tflops,
                 "Peak TFLOP/s for MFU on cuda (default 989: H200 SXM dense bf16, spec sheet)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--profile", profile, "Also print time per op (synchronizes after every op)");
  CLI11_PARSE(app, argc, argv);
  if (dev.precision.empty()) dev.precision = dev.cuda() ? "bf16" : "fp32";

  try {
    std::vector<Workload> work;
    if (!config.empty()) {
      const LoadedConfig cfg = load_config(config);
      Workload w;
      w.name = std::filesystem::path(config).stem().string();
      w.spec = ModelSpec::from_config(cfg.msg.model(), vocab);
      w.seq = seq_opt->count() > 0 ? seq : cfg.msg.train().seq_len();
      w.batch = batch_opt->count() > 0 ? batch : cfg.msg.train().micro_batch();
      work.push_back(w);
    } else if (layers > 0) {
      work.push_back(
          {"custom",
           model_spec(layers, d_model, heads, vocab, seq, position, !no_dape, width, attention),
           batch, seq});
    } else {
      if (preset == "demo" || preset == "all")
        work.push_back({"demo",
                        model_spec(4, 256, 8, 257, 128, position, !no_dape, width, attention), 16,
                        128});
      if (preset == "125m" || preset == "all")
        work.push_back({"125m",
                        model_spec(12, 768, 12, 50257, 128, position, !no_dape, width, attention),
                        8, 128});
    }
    std::unique_ptr<Ops> backend = make_bench_ops(dev.device, dev.precision, dev.threads);
    if (dev.cuda()) {
      const std::string devices = query_cuda_devices().description;
      std::printf("cuda %s on %s; MFU against a peak of %.0f TFLOP/s (--peak-tflops)\n",
                  dev.precision.c_str(), devices.substr(0, devices.find('\n')).c_str(),
                  dev.peak_tflops);
      std::printf("%-6s %3s %5s %4s %6s %-7s %-4s %4s %5s %3s  %8s %10s %9s %7s  %7s\n", "model",
                  "L", "d", "H", "vocab", "pos", "dape", "T", "batch", "n", "step_s", "tokens/s",
                  "TFLOP/s", "MFU", "Mparams");
    } else {
      std::printf("%-6s %3s %5s %4s %6s %-7s %-4s %4s %5s %3s  %8s %10s %9s  %7s\n", "model", "L",
                  "d", "H", "vocab", "pos", "dape", "T", "batch", "n", "step_s", "tokens/s",
                  "GFLOP/s", "Mparams");
    }
    for (const auto& w : work) {
      // The 125M preset takes seconds per step on a CPU.
      const bool slow = !dev.cuda() && w.name == "125m";
      run(*backend, w, dev, slow && steps > 3 ? 3 : steps, profile);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench/train_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
