/*
 * bench/gemm: throughput of the CPU kernels at the shapes the models use.
 *
 * Float sgemm (oneDNN) at 2048³ and at every linear layer of two models, in the three forms a
 * training step runs: forward y = x·Wᵀ (NT), input gradient dx = dy·W (NN), weight gradient
 * dW = dyᵀ·x (TN):
 *   - 4 layers, d_model 256, 2048 tokens per step (M = 2048): QKV 256→768, attention out
 *     256→256, MLP 256→1024 and 1024→256;
 *   - GPT-NeoX 125M, 1024 tokens (M = 1024): QKV 768→2304, 768→768, 768→3072, 3072→768, and the
 *     LM head 768→50304;
 * and the double GEMM used by gradient checks at 512³.
 * Then LayerNorm, GELU and cross-entropy at those sizes, and AdamW over 16M parameters, as bytes
 * moved per second (the minimum traffic: each input read once, each output written once) and
 * elements per second.
 *
 * Each row: two warm-up calls, then calls repeated until at least 0.5 s have passed; the time
 * is the mean per call. Threads are OpenMP's (set OMP_NUM_THREADS). Prints figures only; never
 * fails on time.
 */
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "common/rng.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/gemm.h"

namespace dape {
namespace {

// Mean seconds per call of fn, after warm-up, over at least min_seconds.
double time_per_call(const std::function<void()>& fn, double min_seconds = 0.5) {
  using Clock = std::chrono::steady_clock;
  fn();
  fn();
  int64_t calls = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  do {
    fn();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < min_seconds || calls < 3);
  return elapsed / static_cast<double>(calls);
}

std::vector<float> random_floats(int64_t n, uint64_t seed) {
  Rng rng(seed, 3);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.uniform(-1.0, 1.0));
  return v;
}

struct GemmShape {
  const char* name;
  bool trans_a, trans_b;
  int64_t M, N, K;
};

void bench_gemm(const GemmShape& s) {
  const int64_t a_rows = s.trans_a ? s.K : s.M, a_cols = s.trans_a ? s.M : s.K;
  const int64_t b_rows = s.trans_b ? s.N : s.K, b_cols = s.trans_b ? s.K : s.N;
  std::vector<float> a = random_floats(a_rows * a_cols, 1), b = random_floats(b_rows * b_cols, 2);
  std::vector<float> c(s.M * s.N, 0.0f);
  const double sec = time_per_call([&] {
    cpu::gemm<float>(s.trans_a, s.trans_b, s.M, s.N, s.K, 1.0f, a.data(), a_cols, b.data(), b_cols,
                     0.0f, c.data(), s.N);
  });
  const double flops = 2.0 * static_cast<double>(s.M) * s.N * s.K;
  std::printf("%-26s %c%c %6lld %6lld %6lld %10.1f %10.3f\n", s.name, s.trans_a ? 'T' : 'N',
              s.trans_b ? 'T' : 'N', static_cast<long long>(s.M), static_cast<long long>(s.N),
              static_cast<long long>(s.K), flops / sec * 1e-9, sec * 1e3);
}

// The double GEMM (a blocked loop, for gradient checks) at the largest size it is meant for.
void bench_double_gemm(int64_t n) {
  std::vector<double> a(n * n), b(n * n), c(n * n);
  Rng rng(14, 0);
  for (auto& x : a) x = rng.uniform(-1.0, 1.0);
  for (auto& x : b) x = rng.uniform(-1.0, 1.0);
  const double sec = time_per_call([&] {
    cpu::gemm<double>(false, true, n, n, n, 1.0, a.data(), n, b.data(), n, 0.0, c.data(), n);
  });
  const long long size = static_cast<long long>(n);
  std::printf("%-26s %c%c %6lld %6lld %6lld %10.1f %10.3f\n", "double (blocked loop)", 'N', 'T',
              size, size, size, 2.0 * static_cast<double>(n * n * n) / sec * 1e-9, sec * 1e3);
}

void print_memory_row(const char* name, const char* shape, double bytes, double elements,
                      double sec) {
  std::printf("%-26s %-20s %10.1f %12.1f %10.3f\n", name, shape, bytes / sec * 1e-9,
              elements / sec * 1e-6, sec * 1e3);
}

void bench_layernorm(CpuOps& ops, int64_t rows, int64_t C) {
  auto x = ops.float_buffer({rows, C}), out = ops.float_buffer({rows, C});
  auto dx = ops.float_buffer({rows, C}), dout = ops.float_buffer({rows, C});
  auto w = ops.float_buffer({C}), b = ops.float_buffer({C});
  auto dw = ops.float_buffer({C}), db = ops.float_buffer({C});
  auto mean = ops.float_buffer({rows}), rstd = ops.float_buffer({rows});
  upload(ops, x, random_floats(rows * C, 4));
  upload(ops, dout, random_floats(rows * C, 5));
  upload(ops, w, random_floats(C, 6));
  upload(ops, b, random_floats(C, 7));
  ops.fill(dx, 0);
  ops.fill(dw, 0);
  ops.fill(db, 0);
  const std::string shape = std::to_string(rows) + "x" + std::to_string(C);
  const double n = static_cast<double>(rows * C);
  double sec = time_per_call([&] { ops.layernorm_forward(out, mean, rstd, x, w, b); });
  print_memory_row("layernorm forward", shape.c_str(), 2 * n * 4, n, sec);
  sec = time_per_call([&] { ops.layernorm_backward(dx, dw, db, dout, x, w, mean, rstd); });
  print_memory_row("layernorm backward", shape.c_str(), 4 * n * 4, n, sec);
}

void bench_gelu(CpuOps& ops, int64_t rows, int64_t C) {
  auto x = ops.float_buffer({rows, C}), out = ops.float_buffer({rows, C});
  auto dout = ops.float_buffer({rows, C}), dx = ops.float_buffer({rows, C});
  std::vector<float> xs = random_floats(rows * C, 8);
  for (auto& v : xs) v *= 4.0f;
  upload(ops, x, xs);
  upload(ops, dout, random_floats(rows * C, 9));
  const std::string shape = std::to_string(rows) + "x" + std::to_string(C);
  const double n = static_cast<double>(rows * C);
  double sec = time_per_call([&] { ops.gelu_forward(out, x); });
  print_memory_row("gelu forward", shape.c_str(), 2 * n * 4, n, sec);
  sec = time_per_call([&] { ops.gelu_backward(dx, x, dout); });
  print_memory_row("gelu backward", shape.c_str(), 3 * n * 4, n, sec);
}

void bench_cross_entropy(CpuOps& ops, int64_t rows, int vocab, int64_t padded) {
  auto logits = ops.float_buffer({rows, padded}), losses = ops.float_buffer({rows});
  auto targets = ops.buffer(DType::i32, {rows});
  std::vector<float> l = random_floats(rows * padded, 10);
  for (auto& v : l) v *= 8.0f;
  upload(ops, logits, l);
  std::vector<int32_t> t(rows);
  Rng rng(11, 0);
  for (auto& v : t) v = static_cast<int32_t>(rng.below(vocab));
  upload(ops, targets, t);
  const std::string shape = std::to_string(rows) + "x" + std::to_string(padded);
  const double n = static_cast<double>(rows * padded);
  double sec = time_per_call([&] { ops.cross_entropy(losses, logits, targets, vocab, 0.0); });
  print_memory_row("cross_entropy loss only", shape.c_str(), n * 4, n, sec);
  // With a gradient the logits are overwritten each call; the next call runs on those values,
  // which costs the same.
  sec = time_per_call([&] { ops.cross_entropy(losses, logits, targets, vocab, 1.0 / rows); });
  print_memory_row("cross_entropy + grad", shape.c_str(), 2 * n * 4, n, sec);
}

void bench_adamw(CpuOps& ops, int64_t n) {
  auto p = ops.float_buffer({n}), g = ops.float_buffer({n});
  auto m = ops.float_buffer({n}), v = ops.float_buffer({n});
  upload(ops, p, random_floats(n, 12));
  upload(ops, g, random_floats(n, 13));
  ops.fill(m, 0);
  ops.fill(v, 0);
  AdamWHyper h;
  h.lr = 1e-4;
  h.weight_decay = 0.1;
  const double sec = time_per_call([&] {
    ++h.step;
    ops.adamw(p, g, m, v, h);
  });
  // Reads p, g, m, v; writes p, m, v.
  print_memory_row("adamw", (std::to_string(n / 1000000) + "M params").c_str(), 7.0 * n * 4, n,
                   sec);
}

void run() {
  std::printf("dape CPU kernel benchmark, %d OpenMP threads\n\n", omp_get_max_threads());
  std::printf("%-26s %-2s %6s %6s %6s %10s %10s\n", "sgemm (oneDNN)", "op", "M", "N", "K",
              "GFLOP/s", "ms");
  const std::vector<GemmShape> shapes = {
      {"square", false, false, 2048, 2048, 2048},
      {"d256 qkv fwd", false, true, 2048, 768, 256},
      {"d256 attn-out fwd", false, true, 2048, 256, 256},
      {"d256 fc1 fwd", false, true, 2048, 1024, 256},
      {"d256 fc2 fwd", false, true, 2048, 256, 1024},
      {"d256 qkv dx", false, false, 2048, 256, 768},
      {"d256 attn-out dx", false, false, 2048, 256, 256},
      {"d256 fc1 dx", false, false, 2048, 256, 1024},
      {"d256 fc2 dx", false, false, 2048, 1024, 256},
      {"d256 qkv dW", true, false, 768, 256, 2048},
      {"d256 attn-out dW", true, false, 256, 256, 2048},
      {"d256 fc1 dW", true, false, 1024, 256, 2048},
      {"d256 fc2 dW", true, false, 256, 1024, 2048},
      {"125M qkv fwd", false, true, 1024, 2304, 768},
      {"125M attn-out fwd", false, true, 1024, 768, 768},
      {"125M fc1 fwd", false, true, 1024, 3072, 768},
      {"125M fc2 fwd", false, true, 1024, 768, 3072},
      {"125M lm-head fwd", false, true, 1024, 50304, 768},
      {"125M qkv dx", false, false, 1024, 768, 2304},
      {"125M attn-out dx", false, false, 1024, 768, 768},
      {"125M fc1 dx", false, false, 1024, 768, 3072},
      {"125M fc2 dx", false, false, 1024, 3072, 768},
      {"125M lm-head dx", false, false, 1024, 768, 50304},
      {"125M qkv dW", true, false, 2304, 768, 1024},
      {"125M attn-out dW", true, false, 768, 768, 1024},
      {"125M fc1 dW", true, false, 3072, 768, 1024},
      {"125M fc2 dW", true, false, 768, 3072, 1024},
      {"125M lm-head dW", true, false, 50304, 768, 1024},
  };
  for (const auto& s : shapes) bench_gemm(s);
  bench_double_gemm(512);

  CpuOps ops(DType::f32);
  std::printf("\n%-26s %-20s %10s %12s %10s\n", "float op", "shape", "GB/s", "Melem/s", "ms");
  bench_layernorm(ops, 2048, 256);
  bench_layernorm(ops, 1024, 768);
  bench_gelu(ops, 2048, 1024);
  bench_gelu(ops, 1024, 3072);
  bench_cross_entropy(ops, 1024, 50257, 50304);
  bench_adamw(ops, 16 * 1000 * 1000);
}

}  // namespace
}  // namespace dape

int main() {
  dape::run();
  return 0;
}
