/*
 * Benchmark of the reference attention on the CPU: forward, and forward + backward, of one layer.
 *
 * Default shape: B=16, N=128, H=8, D=32, DAPE with W=32 and Kerple, float32 — a training step's
 * attention at the paper's short training length. `--large` runs N=2048, B=1, H=12, D=64 (the
 * O(H·N²) memory case) instead. Prints the best and median time over the repetitions and GFLOP/s.
 *
 * FLOPs counted over the causal pairs j ≤ i actually computed, B·N(N+1)/2 of them:
 *   forward  = pairs · (2HD for Q·Kᵀ + 2HD for P·V + 2·(2H·W + W·H) for f)
 *   backward = 2 × forward (dq, dk, dP, dv and f's dx, dW1, dact, dW2), recomputation not counted.
 *
 *   usage: attention_reference [--threads N] [--reps R] [--large] [--scheme kerple|fire|...]
 *                              [--no-dape] [--batch B] [--seq N] [--heads H] [--head-dim D]
 *                              [--width W]
 */
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/rng.h"
#include "kernels/cpu/cpu_ops.h"

namespace {

using namespace dape;

struct Options {
  int threads = 2, reps = 10;
  int B = 16, N = 128, H = 8, D = 32, W = 32;
  PositionScheme scheme = PositionScheme::kerple;
  bool dape = true;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads")
      o.threads = std::atoi(next());
    else if (a == "--reps")
      o.reps = std::max(1, std::atoi(next()));
    else if (a == "--no-dape")
      o.dape = false;
    else if (a == "--batch")
      o.B = std::max(1, std::atoi(next()));
    else if (a == "--seq")
      o.N = std::max(1, std::atoi(next()));
    else if (a == "--heads")
      o.H = std::max(1, std::atoi(next()));
    else if (a == "--head-dim")
      o.D = std::max(1, std::atoi(next()));
    else if (a == "--width")
      o.W = std::max(1, std::atoi(next()));
    else if (a == "--large") {
      o.B = 1;
      o.N = 2048;
      o.H = 12;
      o.D = 64;
      o.reps = std::min(o.reps, 2);
    } else if (a == "--scheme") {
      if (!parse_position_scheme(next(), &o.scheme)) {
        std::fprintf(stderr, "unknown scheme %s\n", argv[i]);
        std::exit(2);
      }
    } else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--reps R] [--large] [--scheme S] [--no-dape]\n"
                   "          [--batch B] [--seq N] [--heads H] [--head-dim D] [--width W]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return o;
}

DeviceBuffer random_buffer(Ops& ops, Shape s, uint64_t stream, double lo, double hi) {
  DeviceBuffer b = ops.float_buffer(s);
  Rng r(1234, stream);
  std::vector<float> host(static_cast<size_t>(s.numel()));
  for (auto& x : host) x = static_cast<float>(r.uniform(lo, hi));
  ops.copy_from_host(b, host.data(), DType::f32);
  return b;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  CpuOps ops(DType::f32, o.threads);
  const int B = o.B, N = o.N, H = o.H, D = o.D, W = o.W;
  const double fire_w = W;

  AttentionInputs in;
  in.shape = AttentionShape{B, N, H, D, int64_t{H} * D};
  DeviceBuffer q = random_buffer(ops, {B, N, H, D}, 1, -1, 1);
  DeviceBuffer k = random_buffer(ops, {B, N, H, D}, 2, -1, 1);
  DeviceBuffer v = random_buffer(ops, {B, N, H, D}, 3, -1, 1);
  in.q = q;
  in.k = k;
  in.v = v;
  in.bias.scheme = o.scheme;
  std::vector<DeviceBuffer> keep;
  auto param = [&](Shape s, double bound) -> Tensor {
    keep.push_back(random_buffer(ops, s, 100 + keep.size(), -bound, bound));
    return keep.back();
  };
  DeviceBuffer kp = random_buffer(ops, {H}, 4, 0.1, 2.0), ka = random_buffer(ops, {H}, 5, 0.1, 1.0);
  if (o.scheme == PositionScheme::kerple) {
    in.bias.kerple_p = kp;
    in.bias.kerple_a = ka;
  } else if (o.scheme == PositionScheme::fire) {
    in.bias.fire_c = param({1}, 0.1);
    in.bias.fire_L_multiplier = param({1}, 1.0);
    in.bias.fire_w1 = param({W, 1}, 1.0);
    in.bias.fire_b1 = param({W}, 1.0);
    in.bias.fire_w2 = param({H, W}, 1.0 / std::sqrt(fire_w));
    in.bias.fire_b2 = param({H}, 1.0 / std::sqrt(fire_w));
    in.bias.fire_leaky_relu = o.dape;
  }
  if (o.dape) {
    in.dape.enabled = true;
    in.dape.width = W;
    in.dape.w1 = param({W, 2 * H}, 1.0 / std::sqrt(2.0 * H));
    in.dape.b1 = param({W}, 1.0 / std::sqrt(2.0 * H));
    in.dape.w2 = param({H, W}, 1.0 / std::sqrt(1.0 * W));
    in.dape.b2 = param({H}, 1.0 / std::sqrt(1.0 * W));
  }
  DeviceBuffer out = ops.float_buffer({B, N, H, D}), lse = ops.float_buffer({B, H, N});
  DeviceBuffer dout = random_buffer(ops, {B, N, H, D}, 6, -1, 1);

  AttentionGrads g;
  DeviceBuffer dq = ops.float_buffer({B, N, H, D}), dk = ops.float_buffer({B, N, H, D}),
               dv = ops.float_buffer({B, N, H, D});
  g.dq = dq;
  g.dk = dk;
  g.dv = dv;
  g.bias.scheme = o.scheme;
  auto grad_of = [&](const Tensor& p) -> Tensor {
    if (!p.defined()) return Tensor();
    keep.push_back(random_buffer(ops, p.shape, 999, 0, 0));
    return keep.back();
  };
  g.bias.kerple_p = grad_of(in.bias.kerple_p);
  g.bias.kerple_a = grad_of(in.bias.kerple_a);
  g.bias.fire_c = grad_of(in.bias.fire_c);
  g.bias.fire_L_multiplier = grad_of(in.bias.fire_L_multiplier);
  g.bias.fire_w1 = grad_of(in.bias.fire_w1);
  g.bias.fire_b1 = grad_of(in.bias.fire_b1);
  g.bias.fire_w2 = grad_of(in.bias.fire_w2);
  g.bias.fire_b2 = grad_of(in.bias.fire_b2);
  g.dape.enabled = o.dape;
  g.dape.width = W;
  g.dape.w1 = grad_of(in.dape.w1);
  g.dape.b1 = grad_of(in.dape.b1);
  g.dape.w2 = grad_of(in.dape.w2);
  g.dape.b2 = grad_of(in.dape.b2);

  const double pairs = static_cast<double>(B) * N * (N + 1) / 2;
  const double fwd_flops =
      pairs * (4.0 * H * D + (o.dape ? 2.0 * (2.0 * H * W + 1.0 * W * H) : 0.0));
  const double step_flops = 3 * fwd_flops;

  auto time_it = [&](bool backward) {
    std::vector<double> t;
    for (int r = 0; r <= o.reps; ++r) {  // the first run warms up and is not counted
      const auto t0 = std::chrono::steady_clock::now();
      ops.attention_forward(in, out, lse, AttentionImpl::reference);
      if (backward) ops.attention_backward(in, out, lse, dout, g, AttentionImpl::reference);
      ops.synchronize();
      if (r > 0) t.push_back(seconds_since(t0));
    }
    std::sort(t.begin(), t.end());
    return std::pair(t.front(), t[t.size() / 2]);
  };

  std::printf("reference attention: B=%d N=%d H=%d D=%d, %s%s, float32, %d threads, %d reps\n", B,
              N, H, D, position_scheme_name(o.scheme),
              o.dape ? (" + DAPE W=" + std::to_string(W)).c_str() : "", o.threads, o.reps);
  const auto [fbest, fmed] = time_it(false);
  std::printf("  forward:            best %8.2f ms  median %8.2f ms  %7.1f GFLOP/s (%.3f GFLOP)\n",
              fbest * 1e3, fmed * 1e3, fwd_flops / fbest * 1e-9, fwd_flops * 1e-9);
  const auto [sbest, smed] = time_it(true);
  std::printf("  forward + backward: best %8.2f ms  median %8.2f ms  %7.1f GFLOP/s (%.3f GFLOP)\n",
              sbest * 1e3, smed * 1e3, step_flops / sbest * 1e-9, step_flops * 1e-9);
  return 0;
}
