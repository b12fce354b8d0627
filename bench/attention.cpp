/*
 * Attention benchmark: the fused kernel against the materialized reference, forward and
 * forward + backward of one layer, on the CPU or on a CUDA device.
 *
 *   bench/attention                                  # H=12 D=64 W=32 Kerple+DAPE, N = 128…8192
 *   bench/attention --seq 2048 --impl fused --reps 5
 *   bench/attention --scheme fire --no-dape --batch 16 --seq 128 --heads 8 --head-dim 32
 *   bench/attention --device cuda --precision bf16 --seq 512,2048,8192 --tokens 16384
 *
 * FLOPs are counted over the causal pairs (B·N(N+1)/2): forward = 2HD (Q·Kᵀ) + 2HD (P·V)
 * + 2·(2H·W + W·H) (f) per pair; forward + backward = 3 × forward (recomputation in backward
 * is not counted). These are the nominal FLOPs of the computation, the same for both
 * implementations: the fused CPU kernel evaluates the B half of f's first layer per distance
 * rather than per pair where B depends on i − j alone (kernels/cpu/attention_fused.h), so it
 * performs fewer than it is credited with, and its rate is best read as speed. The reference is skipped where its [H, N, N] tensors would pass
 * --reference-max-gb. Peak RSS is the process's high-water mark after each row (getrusage), so
 * run one implementation at a time (--impl) to attribute memory.
 *
 * On CUDA (--device cuda) the fused kernel runs in fp32 or bf16 (--precision; bf16 by default,
 * the training mode) and the rates are printed in TFLOP/s. Every timer stops after
 * Ops::synchronize(), so a time covers the device's work, not just the launches. The reference
 * is not run on CUDA unless --impl reference or both asks for it (it is the slow oracle).
 * --tokens T sets the batch of each length to T / N (at least 1), so that short sequences still
 * fill the device.
 */
#include <sys/resource.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/rng.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda_device.h"

using namespace dape;

namespace {

struct Options {
  int threads = 0, reps = 3, B = 1, H = 12, D = 64, W = 32, tokens = 0;
  std::vector<int> lengths = {128, 512, 2048, 8192};
  std::string scheme = "kerple", impl;    // impl "": both on the CPU, fused on CUDA
  std::string device = "cpu", precision;  // precision "": fp32 on the CPU, bf16 on CUDA
  bool no_dape = false;
  double reference_max_gb = 16.0;

  bool cuda() const { return device == "cuda"; }
  // The batch at sequence length N.
  int batch(int N) const { return tokens > 0 ? std::max(1, tokens / N) : B; }
};

DeviceBuffer random_buffer(Ops& ops, Shape s, uint64_t stream, double lo, double hi) {
  DeviceBuffer b = ops.float_buffer(s);
  Rng r(1234, stream);
  std::vector<float> host(static_cast<size_t>(s.numel()));
  for (auto& x : host) x = static_cast<float>(r.uniform(lo, hi));
  ops.copy_from_host(b, host.data(), DType::f32);
  return b;
}

double peak_rss_gb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / (1024.0 * 1024.0);
}

struct Timing {
  double forward = 0, both = 0;  // median seconds
};

Timing run(Ops& ops, const Options& o, int N, AttentionImpl impl) {
  const int B = o.batch(N), H = o.H, D = o.D, W = o.W;
  AttentionInputs in;
  in.shape = AttentionShape{B, N, H, D, int64_t{H} * D};
  DeviceBuffer q = random_buffer(ops, {B, N, H, D}, 1, -1, 1),
               k = random_buffer(ops, {B, N, H, D}, 2, -1, 1),
               v = random_buffer(ops, {B, N, H, D}, 3, -1, 1),
               dout = random_buffer(ops, {B, N, H, D}, 4, -1, 1);
  in.q = q;
  in.k = k;
  in.v = v;
  parse_position_scheme(o.scheme, &in.bias.scheme);
  std::vector<DeviceBuffer> keep;
  auto param = [&](Shape s, double lo, double hi) -> Tensor {
    keep.push_back(random_buffer(ops, s, 100 + keep.size(), lo, hi));
    return keep.back();
  };
  AttentionGrads g;
  auto grad = [&](const Tensor& p) -> Tensor {
    keep.push_back(ops.float_buffer(p.shape));
    ops.fill(keep.back(), 0.0);
    return keep.back();
  };
  if (in.bias.scheme == PositionScheme::kerple) {
    in.bias.kerple_p = param({H}, 0.1, 2.0);
    in.bias.kerple_a = param({H}, 0.1, 1.0);
    g.bias.kerple_p = grad(in.bias.kerple_p);
    g.bias.kerple_a = grad(in.bias.kerple_a);
  } else if (in.bias.scheme == PositionScheme::fire) {
    in.bias.fire_c = param({1}, 0.1, 0.1);
    in.bias.fire_L_multiplier = param({1}, 1.0, 1.0);
    in.bias.fire_w1 = param({W, 1}, -1, 1);
    in.bias.fire_b1 = param({W}, -1, 1);
    in.bias.fire_w2 = param({H, W}, -0.2, 0.2);
    in.bias.fire_b2 = param({H}, -0.2, 0.2);
    in.bias.fire_leaky_relu = !o.no_dape;
    g.bias.fire_c = grad(in.bias.fire_c);
    g.bias.fire_L_multiplier = grad(in.bias.fire_L_multiplier);
    g.bias.fire_w1 = grad(in.bias.fire_w1);
    g.bias.fire_b1 = grad(in.bias.fire_b1);
    g.bias.fire_w2 = grad(in.bias.fire_w2);
    g.bias.fire_b2 = grad(in.bias.fire_b2);
  }
  if (!o.no_dape) {
    in.dape.enabled = true;
    in.dape.width = W;
    in.dape.w1 = param({W, 2 * H}, -0.2, 0.2);
    in.dape.b1 = param({W}, -0.2, 0.2);
    in.dape.w2 = param({H, W}, -0.2, 0.2);
    in.dape.b2 = param({H}, -0.2, 0.2);
    g.dape = in.dape;
    g.dape.w1 = grad(in.dape.w1);
    g.dape.b1 = grad(in.dape.b1);
    g.dape.w2 = grad(in.dape.w2);
    g.dape.b2 = grad(in.dape.b2);
  }
  DeviceBuffer out = ops.float_buffer({B, N, H, D}), lse = ops.float_buffer({B, H, N});
  DeviceBuffer dq = ops.float_buffer({B, N, H, D}), dk = ops.float_buffer({B, N, H, D}),
               dv = ops.float_buffer({B, N, H, D});
  g.dq = dq;
  g.dk = dk;
  g.dv = dv;

  auto now = [] { return std::chrono::steady_clock::now(); };
  auto since = [&](auto t0) { return std::chrono::duration<double>(now() - t0).count(); };
  std::vector<double> fwd, both;
  ops.synchronize();                         // the uploads above are not timed
  for (int rep = 0; rep <= o.reps; ++rep) {  // rep 0 warms up
    auto t0 = now();
    ops.attention_forward(in, out, lse, impl);
    ops.synchronize();
    const double tf = since(t0);
    ops.attention_backward(in, out, lse, dout, g, impl);
    ops.synchronize();
    const double tb = since(t0);
    if (rep > 0) {
      fwd.push_back(tf);
      both.push_back(tb);
    }
  }
  std::sort(fwd.begin(), fwd.end());
  std::sort(both.begin(), both.end());
  return {fwd[fwd.size() / 2], both[both.size() / 2]};
}

// The backend the options ask for; throws dape::Error when it cannot be had.
std::unique_ptr<Ops> make_ops(const Options& o) {
  if (!o.cuda()) {
    if (o.precision != "fp32") fail("--precision {}: the CPU computes in fp32 only", o.precision);
    return std::make_unique<CpuOps>(DType::f32, o.threads);
  }
  CudaOpsOptions options;
  if (!parse_cuda_precision(o.precision, &options.precision))
    fail("--precision {}: expected fp32 or bf16", o.precision);
  return make_cuda_ops(options);
}

int bench(Options o) {
  if (o.impl.empty()) o.impl = o.cuda() ? "fused" : "both";
  if (o.precision.empty()) o.precision = o.cuda() ? "bf16" : "fp32";
  std::unique_ptr<Ops> ops_owner = make_ops(o);
  Ops& ops = *ops_owner;
  const double per_pair =
      4.0 * o.H * o.D +
      (o.no_dape ? 0.0 : 2.0 * (2.0 * o.H * o.W + static_cast<double>(o.W) * o.H));
  const std::string batch =
      o.tokens > 0 ? fmt::format("{} tokens/N", o.tokens) : std::to_string(o.B);
  if (o.cuda()) {
    const std::string devices = query_cuda_devices().description;
    std::printf("attention %s%s, B=%s H=%d D=%d%s, cuda %s, %s\n", o.scheme.c_str(),
                o.no_dape ? "" : " + DAPE", batch.c_str(), o.H, o.D,
                o.no_dape ? "" : fmt::format(" W={}", o.W).c_str(), o.precision.c_str(),
                devices.substr(0, devices.find('\n')).c_str());
    std::printf("%-9s %6s %5s %11s %9s %13s %9s\n", "impl", "N", "B", "fwd ms", "TFLOP/s",
                "fwd+bwd ms", "TFLOP/s");
  } else {
    std::printf("attention %s%s, B=%s H=%d D=%d%s, float32, %s threads\n", o.scheme.c_str(),
                o.no_dape ? "" : " + DAPE", batch.c_str(), o.H, o.D,
                o.no_dape ? "" : fmt::format(" W={}", o.W).c_str(),
                o.threads > 0 ? std::to_string(o.threads).c_str() : "default");
    std::printf("%-9s %6s %11s %9s %13s %9s %9s\n", "impl", "N", "fwd ms", "GFLOP/s", "fwd+bwd ms",
                "GFLOP/s", "RSS GB");
  }
  for (int N : o.lengths) {
    const double pairs = static_cast<double>(o.batch(N)) * N * (N + 1) / 2.0;
    const double flops = pairs * per_pair;
    Timing fused{}, ref{};
    for (const char* name : {"fused", "reference"}) {
      const bool is_fused = std::string(name) == "fused";
      if (o.impl != "both" && o.impl != name) continue;
      if (!is_fused && 4.0 * o.H * static_cast<double>(N) * N / 1e9 * 4 > o.reference_max_gb) {
        std::printf("%-9s %6d %11s  (skipped: its [H, N, N] tensors exceed --reference-max-gb)\n",
                    name, N, "-");
        continue;
      }
      const Timing t = run(ops, o, N, is_fused ? AttentionImpl::fused : AttentionImpl::reference);
      (is_fused ? fused : ref) = t;
      if (o.cuda()) {
        std::printf("%-9s %6d %5d %11.3f %9.1f %13.3f %9.1f\n", name, N, o.batch(N),
                    1e3 * t.forward, flops / t.forward / 1e12, 1e3 * t.both,
                    3 * flops / t.both / 1e12);
      } else {
        std::printf("%-9s %6d %11.2f %9.1f %13.2f %9.1f %9.2f\n", name, N, 1e3 * t.forward,
                    flops / t.forward / 1e9, 1e3 * t.both, 3 * flops / t.both / 1e9, peak_rss_gb());
      }
      std::fflush(stdout);
    }
    if (fused.both > 0 && ref.both > 0)
      std::printf("%-9s %6d %11.2fx %23.2fx\n", "speedup", N, ref.forward / fused.forward,
                  ref.both / fused.both);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Attention benchmark: fused vs reference, forward and forward + backward"};
  app.add_option("--seq", o.lengths, "Sequence lengths")->delimiter(',');
  app.add_option("--batch", o.B);
  app.add_option("--heads", o.H);
  app.add_option("--head-dim", o.D);
  app.add_option("--width", o.W, "DAPE's W");
  app.add_option("--scheme", o.scheme,
                 "none|rope|alibi|kerple|fire (rope's rotation is not timed)");
  app.add_flag("--no-dape", o.no_dape);
  app.add_option("--impl", o.impl, "fused|reference|both (default: both on cpu, fused on cuda)")
      ->check(CLI::IsMember({"fused", "reference", "both"}));
  app.add_option("--device", o.device, "cpu|cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--precision", o.precision, "fp32|bf16 (default: fp32 on cpu, bf16 on cuda)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--tokens", o.tokens, "Batch of each length = max(1, tokens / N) (0: --batch)");
  app.add_option("--reps", o.reps, "Timed repetitions (median reported)");
  app.add_option("--threads", o.threads, "CPU threads (0: OMP default)");
  app.add_option(
      "--reference-max-gb", o.reference_max_gb,
      "Skip the reference where four [H, N, N] float tensors (its working set) exceed this");
  CLI11_PARSE(app, argc, argv);
  try {
    return bench(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench/attention: %s\n", e.what());
    return 1;
  }
}
