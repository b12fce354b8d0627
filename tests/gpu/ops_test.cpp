/*
 * Every Ops function on CUDA against CpuOps(f32) on the same inputs, and against itself.
 *
 * Each scenario below runs a handful of calls of one kind on whatever Ops it is given and returns
 * the named results; the test runs it on the CPU (float32, the tested CPU kernels of
 * tests/unit/ops_test.cpp) and twice on CUDA, and expects
 *   - the CUDA results within a tolerance of the CPU's, measured as max |cuda − cpu| / max |cpu|
 *     per result (tests/gpu/gpu_test_util.h);
 *   - the two CUDA runs bitwise equal (every kernel claims fixed-order reductions).
 * Inputs are float-representable, so both backends compute on identical values.
 *
 * Tolerances (fp32 mode), each stated with its scenario:
 *   0      copies, fill, add, clamp_min: exactly rounded or no arithmetic at all.
 *   1e-7   sum_squares: both accumulate in double (ops.h); only the rounding of each square may
 *          differ, ≤ 2⁻²⁴ of one term.
 *   1e-5   everything else: both compute in float with different summation orders and libm
 *          (expf, erff, rsqrtf) implementations, a few ulp of float on each value.
 *   1e-4   the 512 × 768 × 2304 GEMMs (the QKV projection of the 125M model): dx sums 2304
 *          products and cuBLAS orders (and may split) the sum differently from oneDNN; the float
 *          error grows like √K · 2⁻²⁴ of the terms, which reaches ≈1e-5 of the range there.
 *   1e-2   bf16 mode, GEMMs only: operands rounded to 8 mantissa bits (2⁻⁹ relative each), fp32
 *          accumulation; the error of a dot product is ≈2⁻⁸ of its terms' spread. Rounding these
 *          shapes' operands to bf16 and summing in float gives 1.7e-3 to 2.6e-3 of the range.
 */
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "kernels/attention_math.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/gpu/gpu_test_util.h"

namespace dape {
namespace {

using gpu_test::get;
using gpu_test::make;
using gpu_test::make_ids;
using gpu_test::random_floats;

constexpr double kExact = 0.0;
constexpr double kSumSquaresTol = 1e-7;
constexpr double kFloatTol = 1e-5;
constexpr double kLongGemmTol = 1e-4;
constexpr double kBf16GemmTol = 1e-2;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Output {
  std::string name;
  std::vector<double> values;
  double tol;
};
using Scenario = std::function<std::vector<Output>(Ops&)>;

// Runs `scenario` on CpuOps(f32) and twice on CUDA in `precision`; compares as described above.
void check_scenario(const Scenario& scenario, CudaPrecision precision = CudaPrecision::fp32) {
  CpuOps cpu(DType::f32);
  const std::vector<Output> ref = scenario(cpu);
  auto cuda = gpu_test::cuda_ops(precision);
  const std::vector<Output> first = scenario(*cuda);
  const std::vector<Output> second = scenario(*cuda);
  ASSERT_EQ(first.size(), ref.size());
  ASSERT_EQ(second.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err =
        gpu_test::expect_close(first[i].values, ref[i].values, first[i].tol, first[i].name);
    std::printf("  %-44s %9.2e (tolerance %.0e)\n", first[i].name.c_str(), err, first[i].tol);
    gpu_test::expect_bitwise_equal(first[i].values, second[i].values, first[i].name);
  }
}

std::vector<double> as_double(const std::vector<int32_t>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// ---- elementwise and reductions --------------------------------------------------------------

std::vector<Output> elementwise_scenario(Ops& ops) {
  const int64_t n = 100003;  // not a multiple of any vector or block width
  const auto a = random_floats(n, 1), b = random_floats(n, 2);
  auto x = make(ops, {n}, a), y = make(ops, {n}, b), out = ops.float_buffer({n});
  std::vector<Output> r;
  ops.add(out, x, y);
  r.push_back({"add", get(ops, out), kExact});
  ops.add(x, x, y);  // out aliases a
  r.push_back({"add, out aliasing a", get(ops, x), kExact});
  ops.add(y, x, y);  // out aliases b
  r.push_back({"add, out aliasing b", get(ops, y), kExact});
  // x·float(factor) may round once or twice (via double) depending on the kernel: one ulp.
  ops.scale(out, -0.37);
  r.push_back({"scale", get(ops, out), kFloatTol});
  ops.clamp_min(out, 0.1);
  r.push_back({"clamp_min", get(ops, out), kExact});
  auto with_nan = make(ops, {4}, {kNaN, -1.0, 0.5, kNaN});
  ops.clamp_min(with_nan, 0.0);  // a NaN stays NaN: clamp_min must not hide it
  r.push_back({"clamp_min keeps NaN", get(ops, with_nan), kExact});
  ops.fill(out, 3.25);
  r.push_back({"fill", get(ops, out), kExact});
  // A view in the middle: only its elements change.
  ops.fill(x.tensor().slice(7, {1000}), -0.5);
  r.push_back({"fill of a slice", get(ops, x), kExact});
  return r;
}

std::vector<Output> sum_squares_scenario(Ops& ops) {
  std::vector<Output> r;
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1000}, int64_t{100003}, int64_t{4000037}}) {
    auto x = make(ops, {n}, random_floats(n, 3, -3.0, 3.0));
    r.push_back({"sum_squares n=" + std::to_string(n), {ops.sum_squares(x)}, kSumSquaresTol});
  }
  return r;
}

TEST(CudaOps, ElementwiseMatchesCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario(elementwise_scenario);
}

TEST(CudaOps, SumSquaresMatchesCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario(sum_squares_scenario);
}

// ---- copies ----------------------------------------------------------------------------------

std::vector<Output> host_copy_scenario(Ops& ops) {
  const int64_t n = 5003;
  std::vector<Output> r;
  // float host -> float tensor -> float and double hosts.
  std::vector<float> f(n);
  const auto v = random_floats(n, 4, -100.0, 100.0);
  for (int64_t i = 0; i < n; ++i) f[i] = static_cast<float>(v[i]);
  auto t = ops.float_buffer({n});
  upload(ops, t, f);
  const auto back_f = download<float>(ops, t);
  r.push_back({"f32 -> f32 -> f32", std::vector<double>(back_f.begin(), back_f.end()), kExact});
  r.push_back({"f32 -> f32 -> f64", download<double>(ops, t), kExact});
  // double host (not float-representable) -> float tensor: rounded to nearest.
  const auto d = test::random_vector(n, 5, -1.0, 1.0);
  upload(ops, t, d);
  r.push_back({"f64 -> f32 -> f64", download<double>(ops, t), kExact});
  // int32 host -> float tensor (exact below 2^24).
  std::vector<int32_t> ints(n);
  for (int64_t i = 0; i < n; ++i) ints[i] = static_cast<int32_t>((i * 7919) % 200001 - 100000);
  upload(ops, t, ints);
  r.push_back({"i32 -> f32 -> f64", download<double>(ops, t), kExact});
  // int32 host -> int32 tensor -> int32 host.
  auto ids = ops.buffer(DType::i32, {n});
  upload(ops, ids, ints);
  r.push_back({"i32 -> i32 -> i32", as_double(download<int32_t>(ops, ids)), kExact});
  // A view at an offset, both directions.
  const Tensor middle = t.tensor().slice(101, {300});
  upload(ops, middle, std::vector<double>(300, 0.75));
  r.push_back({"f64 -> slice of f32 tensor", download<double>(ops, t), kExact});
  r.push_back(
      {"slice of f32 tensor -> f64", download<double>(ops, t.tensor().slice(99, {7})), kExact});
  return r;
}

std::vector<Output> device_copy_scenario(Ops& ops) {
  std::vector<Output> r;
  const int64_t n = 100003;
  auto src = make(ops, {n}, random_floats(n, 6)), dst = make(ops, {n}, random_floats(n, 7));
  ops.copy(dst, src);
  r.push_back({"copy f32", get(ops, dst), kExact});
  // Into a view at an odd offset of a larger buffer: the rest stays.
  auto big = make(ops, {n + 10}, random_floats(n + 10, 8));
  ops.copy(big.tensor().slice(3, {n}), src);
  r.push_back({"copy f32 into a slice", get(ops, big), kExact});
  std::vector<int32_t> ints(777);
  for (size_t i = 0; i < ints.size(); ++i) ints[i] = static_cast<int32_t>(i * i % 1009);
  auto isrc = make_ids(ops, ints), idst = make_ids(ops, std::vector<int32_t>(777, -1));
  ops.copy(idst, isrc);
  r.push_back({"copy i32", as_double(download<int32_t>(ops, idst)), kExact});

  // copy_2d: 37 rows of 53 columns between strides 64 and 61; what lies between the rows of the
  // destination must stay.
  const int64_t rows = 37, cols = 53, ss = 64, ds = 61;
  auto s2 = make(ops, {rows * ss}, random_floats(rows * ss, 9));
  auto d2 = make(ops, {rows * ds}, random_floats(rows * ds, 10));
  ops.copy_2d(d2, ds, s2, ss, rows, cols);
  r.push_back({"copy_2d f32", get(ops, d2), kExact});
  // The reverse direction, from an offset (a column block of a wider matrix).
  auto d3 = make(ops, {rows * ss}, random_floats(rows * ss, 11));
  ops.copy_2d(d3.tensor().slice(5, {rows * ss - 5}), ss, d2, ds, rows, cols);
  r.push_back({"copy_2d f32 into a column block", get(ops, d3), kExact});
  std::vector<int32_t> iv(rows * ss);
  for (size_t i = 0; i < iv.size(); ++i) iv[i] = static_cast<int32_t>(i);
  auto i2s = make_ids(ops, iv), i2d = make_ids(ops, std::vector<int32_t>(rows * ds, -7));
  ops.copy_2d(i2d, ds, i2s, ss, rows, cols);
  r.push_back({"copy_2d i32", as_double(download<int32_t>(ops, i2d)), kExact});
  return r;
}

TEST(CudaOps, HostCopiesMatchCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario(host_copy_scenario);
}

TEST(CudaOps, DeviceCopiesMatchCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario(device_copy_scenario);
}

// ---- embedding -------------------------------------------------------------------------------

// Forward, then backward accumulating into random gradients, for one vocabulary layout.
// vocab_begin < 0: wte is the whole table; else wte holds rows [vocab_begin, vocab_begin + Vl).
std::vector<Output> embedding_run(Ops& ops, const std::string& what, int64_t V, int64_t Vl,
                                  int64_t vocab_begin, int64_t C, int64_t P, int batch, int seq_len,
                                  int pos_offset, bool positions, uint64_t seed) {
  const int64_t rows = int64_t{batch} * seq_len;
  std::vector<int32_t> tokens(rows);
  Rng rng(seed, 3);
  // Every id of the whole table, with many repeats (the scatter in backward must add them in a
  // fixed order).
  for (auto& t : tokens) t = static_cast<int32_t>(rng.below(V));
  auto ids = make_ids(ops, tokens);
  auto wte = make(ops, {Vl, C}, random_floats(Vl * C, seed + 1));
  auto wpe = make(ops, {P, C}, random_floats(P * C, seed + 2));
  const Tensor pe = positions ? wpe.tensor() : Tensor();
  auto out = ops.float_buffer({rows, C});
  ops.fill(out, kNaN);  // overwritten everywhere
  ops.embedding_forward(out, ids, wte, pe, seq_len, pos_offset, vocab_begin);
  auto dwte = make(ops, {Vl, C}, random_floats(Vl * C, seed + 3));
  auto dwpe = make(ops, {P, C}, random_floats(P * C, seed + 4));
  ops.embedding_backward(dwte, positions ? dwpe.tensor() : Tensor(),
                         make(ops, {rows, C}, random_floats(rows * C, seed + 5)), ids, seq_len,
                         pos_offset, vocab_begin);
  return {{what + " out", get(ops, out), kFloatTol},
          {what + " dwte", get(ops, dwte), kFloatTol},
          {what + " dwpe", get(ops, dwpe), kFloatTol}};  // untouched without positions
}

std::vector<Output> embedding_scenario(Ops& ops) {
  std::vector<Output> r;
  auto add = [&](std::vector<Output> o) { r.insert(r.end(), o.begin(), o.end()); };
  add(embedding_run(ops, "whole table, wpe", 50, 50, -1, 160, 100, 4, 64, 7, true, 20));
  add(embedding_run(ops, "whole table, no wpe", 50, 50, -1, 160, 100, 4, 64, 7, false, 30));
  // Vocabulary-parallel slice: rows [20, 45) of a 50-row table; other ids give zero rows.
  add(embedding_run(ops, "slice [20, 45), wpe", 50, 25, 20, 160, 100, 4, 64, 3, true, 40));
  add(embedding_run(ops, "slice [25, 50), no wpe", 50, 25, 25, 97, 100, 3, 33, 0, false, 50));
  // The demo model's shape: bytes, d_model 768, 8 × 512 tokens (each id ≈ 16 times).
  add(embedding_run(ops, "257 × 768, 8 × 512", 257, 257, -1, 768, 512, 8, 512, 0, true, 60));
  return r;
}

TEST(CudaOps, EmbeddingMatchesCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario(embedding_scenario);
}

// ---- layer norm ------------------------------------------------------------------------------

std::vector<Output> layernorm_run(Ops& ops, int64_t R, int64_t C, double lo, double hi,
                                  uint64_t seed) {
  const std::string what = "layernorm " + std::to_string(R) + "×" + std::to_string(C);
  auto x = make(ops, {R, C}, random_floats(R * C, seed, lo, hi));
  auto w = make(ops, {C}, random_floats(C, seed + 1, 0.5, 1.5));
  auto b = make(ops, {C}, random_floats(C, seed + 2));
  auto out = ops.float_buffer({R, C}), mean = ops.float_buffer({R}), rstd = ops.float_buffer({R});
  ops.layernorm_forward(out, mean, rstd, x, w, b);
  // Backward accumulates into all three gradients.
  auto dx = make(ops, {R, C}, random_floats(R * C, seed + 3));
  auto dw = make(ops, {C}, random_floats(C, seed + 4)),
       db = make(ops, {C}, random_floats(C, seed + 5));
  ops.layernorm_backward(dx, dw, db, make(ops, {R, C}, random_floats(R * C, seed + 6)), x, w, mean,
                         rstd);
  return {
      {what + " out", get(ops, out), kFloatTol},    {what + " mean", get(ops, mean), kFloatTol},
      {what + " rstd", get(ops, rstd), kFloatTol},  {what + " dx (+=)", get(ops, dx), kFloatTol},
      {what + " dw (+=)", get(ops, dw), kFloatTol}, {what + " db (+=)", get(ops, db), kFloatTol}};
}

std::vector<Output> layernorm_scenario(Ops& ops) {
  std::vector<Output> r;
  for (auto o :
       {layernorm_run(ops, 300, 768, -2.0, 3.0, 70), layernorm_run(ops, 65, 97, -1.0, 1.0, 80),
        // Large mean, small spread: a one-pass variance in float loses most digits.
        layernorm_run(ops, 7, 300, 99.0, 101.0, 90), layernorm_run(ops, 4096, 256, -1.0, 1.0, 95)})
    r.insert(r.end(), o.begin(), o.end());
  return r;
}

TEST(CudaOps, LayerNormMatchesCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario(layernorm_scenario);
}

// ---- matmul ----------------------------------------------------------------------------------

std::vector<Output> matmul_run(Ops& ops, int64_t M, int64_t K, int64_t N, bool bias,
                               bool accumulate_dx, bool want_dx, double tol, uint64_t seed) {
  const std::string what = "matmul " + std::to_string(M) + "×" + std::to_string(K) + "×" +
                           std::to_string(N) + (bias ? " bias" : "") +
                           (!want_dx        ? " no dx"
                            : accumulate_dx ? " dx +="
                                            : "");
  auto x = make(ops, {M, K}, random_floats(M * K, seed));
  auto w = make(ops, {N, K}, random_floats(N * K, seed + 1));
  auto b = make(ops, {N}, random_floats(N, seed + 2));
  auto out = ops.float_buffer({M, N});
  ops.fill(out, kNaN);  // overwritten, never read
  ops.matmul_forward(out, x, w, bias ? b.tensor() : Tensor());
  auto dout = make(ops, {M, N}, random_floats(M * N, seed + 3));
  auto dx = make(ops, {M, K}, random_floats(M * K, seed + 4));
  if (!accumulate_dx) ops.fill(dx, want_dx ? kNaN : 0.5);  // overwritten, or left alone
  auto dw = make(ops, {N, K}, random_floats(N * K, seed + 5));
  auto db = make(ops, {N}, random_floats(N, seed + 6));
  ops.matmul_backward(want_dx ? dx.tensor() : Tensor(), dw, bias ? db.tensor() : Tensor(), dout, x,
                      w, accumulate_dx);
  return {{what + " out", get(ops, out), tol},
          {what + " dx", get(ops, dx), tol},
          {what + " dw (+=)", get(ops, dw), tol},
          {what + " db (+=, or untouched)", get(ops, db), tol}};
}

// The GEMM shapes: odd sizes (no dimension a multiple of 4, 8 or 16) in every variant of the
// backward, the tiny model's, and the 125M model's QKV projection over one 512-token sequence.
std::vector<Output> matmul_scenario(Ops& ops, double small_tol, double big_tol) {
  std::vector<Output> r;
  for (auto o : {matmul_run(ops, 37, 53, 19, true, false, true, small_tol, 100),
                 matmul_run(ops, 37, 53, 19, false, true, true, small_tol, 110),
                 matmul_run(ops, 37, 53, 19, true, false, false, small_tol, 120),
                 matmul_run(ops, 1, 7, 3, true, true, true, small_tol, 130),
                 matmul_run(ops, 18, 8, 13, true, false, true, small_tol, 140),
                 matmul_run(ops, 512, 768, 2304, true, false, true, big_tol, 150)})
    r.insert(r.end(), o.begin(), o.end());
  return r;
}

TEST(CudaOps, MatmulMatchesCpuInFp32) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario([](Ops& ops) { return matmul_scenario(ops, kFloatTol, kLongGemmTol); });
}

TEST(CudaOps, MatmulMatchesCpuInBf16) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario([](Ops& ops) { return matmul_scenario(ops, kBf16GemmTol, kBf16GemmTol); },
                 CudaPrecision::bf16);
}

// ---- GELU ------------------------------------------------------------------------------------

std::vector<Output> gelu_scenario(Ops& ops) {
  const int64_t n = 100003;
  auto x = make(ops, {n}, random_floats(n, 160, -6.0, 6.0));
  auto out = ops.float_buffer({n});
  ops.gelu_forward(out, x);
  const auto g = random_floats(n, 161);
  auto dout = make(ops, {n}, g), dx = ops.float_buffer({n});
  ops.gelu_backward(dx, x, dout);
  ops.gelu_backward(dout, x, dout);  // dx aliasing dout
  return {{"gelu out", get(ops, out), kFloatTol},
          {"gelu dx", get(ops, dx), kFloatTol},
          {"gelu dx aliasing dout", get(ops, dout), kFloatTol}};
}

TEST(CudaOps, GeluMatchesCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario(gelu_scenario);
}

TEST(CudaOps, GeluBackwardAliasingDoutEqualsOutOfPlace) {
  DAPE_SKIP_WITHOUT_CUDA();
  const auto got = gelu_scenario(*gpu_test::cuda_ops(CudaPrecision::fp32));
  gpu_test::expect_bitwise_equal(got[2].values, got[1].values, "gelu dx aliasing dout");
}

// ---- rotary ----------------------------------------------------------------------------------

// Rotates q and k of a fused QKV buffer [B·N, 3·H·D] in place (v must stay), then applies the
// transpose to a random gradient buffer of the same layout.
std::vector<Output> rope_run(Ops& ops, int B, int N, int H, int D, int pos_offset, uint64_t seed) {
  const std::string what = "rope B" + std::to_string(B) + " N" + std::to_string(N) + " H" +
                           std::to_string(H) + " D" + std::to_string(D) + " from " +
                           std::to_string(pos_offset);
  const int64_t HD = int64_t{H} * D, rows = int64_t{B} * N;
  const AttentionShape s{B, N, H, D, 3 * HD};
  auto qkv = make(ops, {rows, 3 * HD}, random_floats(rows * 3 * HD, seed));
  const Tensor q = qkv.tensor().slice(0, {B, N, H, D}), k = qkv.tensor().slice(HD, {B, N, H, D});
  ops.rope_forward(q, k, s, pos_offset, attention_math::kRopeBase);
  auto d = make(ops, {rows, 3 * HD}, random_floats(rows * 3 * HD, seed + 1));
  ops.rope_backward(d.tensor().slice(0, {B, N, H, D}), d.tensor().slice(HD, {B, N, H, D}), s,
                    pos_offset, attention_math::kRopeBase);
  return {{what + " q, k (v kept)", get(ops, qkv), kFloatTol},
          {what + " transpose", get(ops, d), kFloatTol}};
}

// cos and sin come from angles computed in double (as the CPU does); positions up to 8192 are
// where a float angle would be off by 1e-3 rad.
std::vector<Output> rope_scenario(Ops& ops) {
  std::vector<Output> r;
  for (auto o : {rope_run(ops, 2, 37, 3, 8, 5, 170), rope_run(ops, 2, 128, 12, 64, 0, 180),
                 rope_run(ops, 1, 192, 12, 64, 8000, 190), rope_run(ops, 3, 1, 4, 2, 17, 200)})
    r.insert(r.end(), o.begin(), o.end());
  return r;
}

TEST(CudaOps, RopeMatchesCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario(rope_scenario);
}

// ---- cross-entropy ---------------------------------------------------------------------------

std::vector<int32_t> spread_targets(int64_t R, int64_t V) {
  std::vector<int32_t> t(R);
  for (int64_t r = 0; r < R; ++r) t[r] = static_cast<int32_t>((r * 7919 + r / 3) % V);
  if (R > 1) {
    t[0] = 0;
    t[R - 1] = static_cast<int32_t>(V - 1);  // the first and the last real column
  }
  return t;
}

// Logits [R, Vp] with padding columns holding 1000 (they must be ignored).
std::vector<double> padded_logits(int64_t R, int64_t V, int64_t Vp, uint64_t seed) {
  auto l = random_floats(R * Vp, seed, -8.0, 8.0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = V; j < Vp; ++j) l[r * Vp + j] = 1000.0;
  return l;
}

// The padding columns of a gradient, which must be exactly 0.
std::vector<double> padding_of(const std::vector<double>& g, int64_t R, int64_t Vp,
                               int64_t first_padding) {
  std::vector<double> p;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = std::max<int64_t>(first_padding, 0); j < Vp; ++j) p.push_back(g[r * Vp + j]);
  return p;
}

std::vector<Output> cross_entropy_run(Ops& ops, int64_t R, int64_t V, int64_t Vp, uint64_t seed) {
  const std::string what =
      "cross_entropy " + std::to_string(R) + "×" + std::to_string(V) + "/" + std::to_string(Vp);
  const auto logits = padded_logits(R, V, Vp, seed);
  auto targets = make_ids(ops, spread_targets(R, V));
  std::vector<Output> r;
  // grad_scale 0: losses only, logits left alone.
  auto l0 = make(ops, {R, Vp}, logits), losses = ops.float_buffer({R});
  ops.cross_entropy(losses, l0, targets, static_cast<int>(V), 0.0);
  r.push_back({what + " losses", get(ops, losses), kFloatTol});
  r.push_back({what + " logits untouched at grad_scale 0", get(ops, l0), kExact});
  // grad_scale ≠ 0: the gradient in place, exact zeros in the padding.
  auto l1 = make(ops, {R, Vp}, logits);
  ops.fill(losses, kNaN);
  ops.cross_entropy(losses, l1, targets, static_cast<int>(V), 1.0 / R);
  const auto g = get(ops, l1);
  r.push_back({what + " losses with gradient", get(ops, losses), kFloatTol});
  r.push_back({what + " dlogits", g, kFloatTol});
  r.push_back({what + " dlogits padding (zeros)", padding_of(g, R, Vp, V), kExact});
  return r;
}

std::vector<Output> cross_entropy_scenario(Ops& ops) {
  std::vector<Output> r;
  for (auto o : {cross_entropy_run(ops, 64, 1000, 1024, 210), cross_entropy_run(ops, 5, 7, 9, 220),
                 // The GPT-2 vocabulary padded to a multiple of 128 (the 125M model).
                 cross_entropy_run(ops, 16, 50257, 50304, 230)})
    r.insert(r.end(), o.begin(), o.end());
  return r;
}

TEST(CudaOps, CrossEntropyMatchesCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario(cross_entropy_scenario);
}

// Vocabulary-parallel cross-entropy over 2 slices of Vp/2 columns: each slice's statistics, the
// gather (copies into [2, R, 3]), then the losses and each slice's gradient.
std::vector<Output> slice_stats_run(Ops& ops, int64_t R, int64_t V, int64_t Vp, uint64_t seed) {
  const std::string what =
      "slices of " + std::to_string(R) + "×" + std::to_string(V) + "/" + std::to_string(Vp);
  const int64_t Vl = Vp / 2;
  const auto logits = padded_logits(R, V, Vp, seed);
  std::vector<std::vector<double>> slice(2);
  for (int s = 0; s < 2; ++s)
    for (int64_t r = 0; r < R; ++r)
      slice[s].insert(slice[s].end(), logits.begin() + r * Vp + s * Vl,
                      logits.begin() + r * Vp + (s + 1) * Vl);
  auto targets = make_ids(ops, spread_targets(R, V));
  auto all_stats = ops.float_buffer({2, R, 3});
  std::vector<DeviceBuffer> parts;
  std::vector<Output> r;
  for (int s = 0; s < 2; ++s) {
    parts.push_back(make(ops, {R, Vl}, slice[s]));
    auto stats = ops.float_buffer({R, 3});
    ops.cross_entropy_slice_stats(stats, parts.back(), targets, s * Vl, static_cast<int>(V));
    const auto st = get(ops, stats);
    std::vector<double> col[3];
    for (int64_t i = 0; i < R; ++i)
      for (int c = 0; c < 3; ++c) col[c].push_back(st[i * 3 + c]);
    const std::string name = what + " slice " + std::to_string(s);
    r.push_back({name + " max", col[0], kFloatTol});  // −inf for a slice without real columns
    r.push_back({name + " sum of exp", col[1], kFloatTol});
    r.push_back({name + " target logit", col[2], kFloatTol});
    ops.copy(all_stats.tensor().slice(s * R * 3, {R, 3}), stats);
  }
  for (double grad_scale : {0.0, 0.5 / R}) {
    for (int s = 0; s < 2; ++s) {
      auto l = make(ops, {R, Vl}, slice[s]), losses = ops.float_buffer({R});
      ops.cross_entropy_from_slice_stats(losses, l, all_stats, targets, s * Vl, static_cast<int>(V),
                                         grad_scale);
      const std::string name = what + " slice " + std::to_string(s) +
                               (grad_scale != 0 ? " with gradient" : " grad_scale 0");
      r.push_back({name + " losses", get(ops, losses), kFloatTol});
      const auto g = get(ops, l);
      r.push_back({name + (grad_scale != 0 ? " dlogits" : " logits untouched"), g,
                   grad_scale != 0 ? kFloatTol : kExact});
      if (grad_scale != 0)
        r.push_back({name + " padding (zeros)", padding_of(g, R, Vl, V - s * Vl), kExact});
    }
  }
  return r;
}

std::vector<Output> slice_stats_scenario(Ops& ops) {
  std::vector<Output> r;
  // Padding in the second slice only; then a second slice without any real column.
  for (auto o :
       {slice_stats_run(ops, 64, 1000, 1024, 240), slice_stats_run(ops, 33, 300, 1024, 250)})
    r.insert(r.end(), o.begin(), o.end());
  return r;
}

TEST(CudaOps, CrossEntropySliceStatsMatchCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario(slice_stats_scenario);
}

// ---- AdamW -----------------------------------------------------------------------------------

std::vector<Output> adamw_run(Ops& ops, int64_t n, double weight_decay, uint64_t seed) {
  const std::string what = "adamw n=" + std::to_string(n) + " wd " + std::to_string(weight_decay);
  auto p = make(ops, {n}, random_floats(n, seed));
  auto m = ops.float_buffer({n}), v = ops.float_buffer({n});
  ops.fill(m, 0);
  ops.fill(v, 0);
  AdamWHyper h;
  h.lr = 1e-3;
  h.weight_decay = weight_decay;
  for (int s = 1; s <= 5; ++s) {
    h.step = s;
    // Gradients of varied scale, some far below eps's influence and some far above.
    ops.adamw(p, make(ops, {n}, random_floats(n, seed + s, -2.0, 2.0)), m, v, h);
  }
  return {{what + " p", get(ops, p), kFloatTol},
          {what + " m", get(ops, m), kFloatTol},
          {what + " v", get(ops, v), kFloatTol}};
}

std::vector<Output> adamw_scenario(Ops& ops) {
  std::vector<Output> r;
  for (auto o : {adamw_run(ops, 100003, 0.1, 260), adamw_run(ops, 1001, 0.0, 270)})
    r.insert(r.end(), o.begin(), o.end());
  return r;
}

TEST(CudaOps, AdamWMatchesCpu) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_scenario(adamw_scenario);
}

// ---- the backend itself ----------------------------------------------------------------------

TEST(CudaOps, ReportsItsFloatTypeAndName) {
  DAPE_SKIP_WITHOUT_CUDA();
  for (CudaPrecision p : {CudaPrecision::fp32, CudaPrecision::bf16}) {
    auto ops = gpu_test::cuda_ops(p);
    EXPECT_EQ(ops->float_dtype(), DType::f32) << cuda_precision_name(p);
    EXPECT_TRUE(ops->has_attention(AttentionImpl::fused)) << cuda_precision_name(p);
    EXPECT_FALSE(ops->name().empty());
    EXPECT_NE(cuda_stream_of(*ops), nullptr) << cuda_precision_name(p);
  }
  CpuOps cpu;
  EXPECT_EQ(cuda_stream_of(cpu), nullptr);
}

}  // namespace
}  // namespace dape
