/*
 * Attention benchmark: the fused kernel against the materialized reference, forward and
 * forward + backward of one layer, on the CPU or on a CUDA device.
 *
 *   bench/attention                                  # H=12 D=64 W=32 Kerple+DAPE, N = 128…8192
 *   bench/attention --seq 2048 --paired --reps 9     # the speed-up, steady on a shared machine
 *   bench/attention --seq 2048 --impl fused --reps 5
 *   bench/attention --scheme fire --no-dape --batch 16 --seq 128 --heads 8 --head-dim 32
 *   bench/attention --device cuda --precision bf16 --seq 512,2048,8192 --tokens 16384
 *
 * FLOPs are counted over the causal pairs (B·N(N+1)/2): forward = 2HD (Q·Kᵀ) + 2HD (P·V)
 * + 2·(2H·W + W·H) (f) per pair; forward + backward = 3 × forward (recomputation in backward
 * is not counted). These are the nominal FLOPs of the computation, the same for both
 * implementations. The fused CPU kernel evaluates the B half of f's first layer per distance
 * rather than per pair where B depends on i − j alone (kernels/cpu/attention_fused.h): at
 * H = 12, D = 64, W = 32 its forward performs 2,304 multiply-adds per pair where 2,688 are
 * counted, and forward + backward 8,448 (the backward's recomputation included) where 8,064 are.
 * The reference is skipped where its [H, N, N] tensors would pass --reference-max-gb. Peak RSS
 * is the process's high-water mark after each row (getrusage), so run one implementation at a
 * time (--impl) to attribute memory.
 *
 * --paired (CPU) times fused and reference in turn within each repetition and reports the median
 * of the per-repetition ratios: on a shared machine whose speed drifts, that ratio holds where
 * two medians taken minutes apart do not.
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

#include "bench/bench_ops.h"
#include "common/rng.h"
#include "kernels/cuda_device.h"

using namespace dape;

namespace {

struct Options {
  int threads = 0, reps = 3, B = 1, H = 12, D = 64, W = 32, tokens = 0;
  std::vector<int> lengths = {128, 512, 2048, 8192};
  std::string scheme = "kerple", impl;    // impl "": both on the CPU, fused on CUDA
  std::string device = "cpu", precision;  // precision "": fp32 on the CPU, bf16 on CUDA
  bool no_dape = false, paired = false;
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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One layer's attention problem (random inputs, DAPE and scheme parameters, output and gradient
// buffers) at length N; time() runs forward, then backward, once.
class Problem {
 public:
  Problem(Ops& ops, const Options& o, int N) : ops_(ops) {
    const int B = o.batch(N), H = o.H, D = o.D, W = o.W;
    in_.shape = AttentionShape{B, N, H, D, int64_t{H} * D};
    q_ = random_buffer(ops, {B, N, H, D}, 1, -1, 1);
    k_ = random_buffer(ops, {B, N, H, D}, 2, -1, 1);
    v_ = random_buffer(ops, {B, N, H, D}, 3, -1, 1);
    dout_ = random_buffer(ops, {B, N, H, D}, 4, -1, 1);
    in_.q = q_;
    in_.k = k_;
    in_.v = v_;
    parse_position_scheme(o.scheme, &in_.bias.scheme);
    AttentionGrads& g = g_;
    if (in_.bias.scheme == PositionScheme::kerple) {
      in_.bias.kerple_p = param({H}, 0.1, 2.0);
      in_.bias.kerple_a = param({H}, 0.1, 1.0);
      g.bias.kerple_p = grad(in_.bias.kerple_p);
      g.bias.kerple_a = grad(in_.bias.kerple_a);
    } else if (in_.bias.scheme == PositionScheme::fire) {
      in_.bias.fire_c = param({1}, 0.1, 0.1);
      in_.bias.fire_L_multiplier = param({1}, 1.0, 1.0);
      in_.bias.fire_w1 = param({W, 1}, -1, 1);
      in_.bias.fire_b1 = param({W}, -1, 1);
      in_.bias.fire_w2 = param({H, W}, -0.2, 0.2);
      in_.bias.fire_b2 = param({H}, -0.2, 0.2);
      in_.bias.fire_leaky_relu = !o.no_dape;
      g.bias.fire_c = grad(in_.bias.fire_c);
      g.bias.fire_L_multiplier = grad(in_.bias.fire_L_multiplier);
      g.bias.fire_w1 = grad(in_.bias.fire_w1);
      g.bias.fire_b1 = grad(in_.bias.fire_b1);
      g.bias.fire_w2 = grad(in_.bias.fire_w2);
      g.bias.fire_b2 = grad(in_.bias.fire_b2);
    }
    if (!o.no_dape) {
      in_.dape.enabled = true;
      in_.dape.width = W;
      in_.dape.w1 = param({W, 2 * H}, -0.2, 0.2);
      in_.dape.b1 = param({W}, -0.2, 0.2);
      in_.dape.w2 = param({H, W}, -0.2, 0.2);
      in_.dape.b2 = param({H}, -0.2, 0.2);
      g.dape = in_.dape;
      g.dape.w1 = grad(in_.dape.w1);
      g.dape.b1 = grad(in_.dape.b1);
      g.dape.w2 = grad(in_.dape.w2);
      g.dape.b2 = grad(in_.dape.b2);
    }
    out_ = ops.float_buffer({B, N, H, D});
    lse_ = ops.float_buffer({B, H, N});
    dq_ = ops.float_buffer({B, N, H, D});
    dk_ = ops.float_buffer({B, N, H, D});
    dv_ = ops.float_buffer({B, N, H, D});
    g.dq = dq_;
    g.dk = dk_;
    g.dv = dv_;
    ops.synchronize();  // the uploads are not timed
  }

  // Seconds of the forward pass and of forward + backward.
  Timing time(AttentionImpl impl) {
    auto now = [] { return std::chrono::steady_clock::now(); };
    auto since = [&](auto t0) { return std::chrono::duration<double>(now() - t0).count(); };
    auto t0 = now();
    ops_.attention_forward(in_, out_, lse_, impl);
    ops_.synchronize();
    const double tf = since(t0);
    ops_.attention_backward(in_, out_, lse_, dout_, g_, impl);
    ops_.synchronize();
    return {tf, since(t0)};
  }

 private:
  Tensor param(Shape s, double lo, double hi) {
    keep_.push_back(random_buffer(ops_, s, 100 + keep_.size(), lo, hi));
    return keep_.back();
  }
  Tensor grad(const Tensor& p) {
    keep_.push_back(ops_.float_buffer(p.shape));
    ops_.fill(keep_.back(), 0.0);
    return keep_.back();
  }

  Ops& ops_;
  AttentionInputs in_;
  AttentionGrads g_;
  DeviceBuffer q_, k_, v_, dout_, out_, lse_, dq_, dk_, dv_;
  std::vector<DeviceBuffer> keep_;
};

// Medians over o.reps timed repetitions after one warm-up.
Timing run(Ops& ops, const Options& o, int N, AttentionImpl impl) {
  Problem p(ops, o, N);
  std::vector<double> fwd, both;
  for (int rep = 0; rep <= o.reps; ++rep) {  // rep 0 warms up
    const Timing t = p.time(impl);
    if (rep > 0) {
      fwd.push_back(t.forward);
      both.push_back(t.both);
    }
  }
  return {median(fwd), median(both)};
}

// --paired: fused and reference in turn, rep by rep, so that a drift in the machine's speed (a
// shared host) reaches both alike; the speed-up is the median of the per-rep ratios.
struct Paired {
  Timing fused, reference, speedup;
};
Paired run_paired(Ops& ops, const Options& o, int N) {
  Problem p(ops, o, N);
  std::vector<double> ff, fb, rf, rb, sf, sb;
  for (int rep = 0; rep <= o.reps; ++rep) {
    const Timing f = p.time(AttentionImpl::fused);
    const Timing r = p.time(AttentionImpl::reference);
    if (rep == 0) continue;
    ff.push_back(f.forward);
    fb.push_back(f.both);
    rf.push_back(r.forward);
    rb.push_back(r.both);
    sf.push_back(r.forward / f.forward);
    sb.push_back(r.both / f.both);
  }
  return {{median(ff), median(fb)}, {median(rf), median(rb)}, {median(sf), median(sb)}};
}

int bench(Options o) {
  if (o.impl.empty()) o.impl = o.cuda() ? "fused" : "both";
  if (o.precision.empty()) o.precision = o.cuda() ? "bf16" : "fp32";
  if (o.paired && (o.cuda() || o.impl != "both"))
    fail(
        "--paired times fused against reference on the CPU: it needs --device cpu and --impl "
        "both (got --device {} --impl {})",
        o.device, o.impl);
  std::unique_ptr<Ops> ops_owner = make_bench_ops(o.device, o.precision, o.threads);
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
    const bool ref_fits = 4.0 * o.H * static_cast<double>(N) * N / 1e9 * 4 <= o.reference_max_gb;
    if (o.paired && ref_fits) {
      const Paired p = run_paired(ops, o, N);
      for (const auto& [name, t] :
           {std::pair{"fused", p.fused}, std::pair{"reference", p.reference}})
        std::printf("%-9s %6d %11.2f %9.1f %13.2f %9.1f %9.2f\n", name, N, 1e3 * t.forward,
                    flops / t.forward / 1e9, 1e3 * t.both, 3 * flops / t.both / 1e9, peak_rss_gb());
      std::printf("%-9s %6d %11.2fx %23.2fx  (median of the per-rep ratios)\n", "speedup", N,
                  p.speedup.forward, p.speedup.both);
      std::fflush(stdout);
      continue;
    }
    for (const char* name : {"fused", "reference"}) {
      const bool is_fused = std::string(name) == "fused";
      if (o.impl != "both" && o.impl != name) continue;
      if (!is_fused && !ref_fits) {
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
  app.add_flag("--paired", o.paired,
               "CPU: time fused and reference in turn, rep by rep; the speed-up is the median of "
               "the per-rep ratios (steady on a shared machine whose speed drifts; the RSS column "
               "then covers both)");
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
