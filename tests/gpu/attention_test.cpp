/*
 * The fused CUDA attention against the CPU reference, and against itself.
 *
 * Every case (tests/gpu/attention_run.h) runs once on the materialized CPU reference in double
 * (CpuOps(f64), the oracle: its own rounding is far below the tolerances, so they bound the
 * CUDA kernel's error alone) and twice on CUDA's fused kernel in each precision. Each output
 * (out, lse) and each gradient (dq, dk, dv and every learned parameter's, accumulated onto a
 * non-zero start) is measured element by element against the reference's largest magnitude,
 * |cuda − cpu| / max |cpu| (a gradient against the largest of its group: dq, dk, dv together, and
 * each learned component's, see compare()), by the root mean square and the largest of these:
 *
 *                        activations (out, lse, dq, dk, dv)   parameter gradients
 *                        rms        largest                   rms        largest
 *   fp32                 1e-4       1e-3                      3e-4       3e-3
 *   bf16                 1e-2       5e-2                      1e-1       5e-1
 *
 * fp32: 1e-4 is the golden files' tolerance (float rounding of the softmax statistics and of sums
 * over up to 1000 keys); the cases below stay under 5e-7 rms and 4e-5 largest for activations,
 * both on the CPU's float kernels and on a host emulation of the CUDA kernel's blocks. Parameter
 * gradients get more room for one effect no float computation avoids: a LeakyReLU unit of f whose
 * input is within rounding of 0 takes the other branch, which moves that unit's gradient row by
 * one pair's term. At N = 1000 (16M evaluations of f's 32 units) that happens a few times: with
 * NoPE + DAPE both float implementations measured 6e-5 rms and 5.5e-4 largest; elsewhere 1e-6.
 * bf16: the tile GEMMs (Q·Kᵀ, P·V and f on tensor cores) see operands rounded to 8 mantissa bits,
 * 2⁻⁹ relative each. Activations measured (emulated kernel) up to 2e-3 rms and 2.8e-2 largest
 * (ALiBi + DAPE at N = 1000, where the bias reaches −600 and enters f rounded). Parameter
 * gradients are sums over every pair of terms that cancel (dA sums to zero over each row), so
 * they are ill-conditioned: rounding just the inputs to bf16 and computing in double moves them
 * by up to 3.8e-2 rms and 5e-2 largest on these cases; the emulated kernel measured up to 3.7e-2
 * rms and 1.8e-1 largest. The largest-element bound there only catches gross errors (a sign, a
 * missing term: errors of order 1); the rms carries the check.
 *
 * The two CUDA runs must agree bit for bit, and backward must write every element of dq, dk, dv
 * and nothing outside them.
 *
 * Cases: every scheme (none, alibi, kerple, fire; rope through the rope op) with and without
 * DAPE, at N ∈ {1, 2, 63, 64, 65, 127} for (H, D) = (3, 32) and (12, 64), at N = 1000, with mixed
 * H and D; decoding (kv_len > seq_len, keys in a cache with its own strides); a local head range
 * (tensor parallelism); arbitrary strides. Then the shared golden files, in fp32.
 */
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "core/golden/attention_golden.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/gpu/attention_run.h"
#include "tests/gpu/gpu_test_util.h"

namespace dape {
namespace {

using gpu_test::AttentionCase;
using gpu_test::AttentionLayout;
using gpu_test::AttentionResult;
using gpu_test::AttentionRun;

struct Tolerance {
  double rms, max;
};
struct Backend {
  CudaPrecision precision;
  Tolerance activations;  // out, lse, dq, dk, dv
  Tolerance parameters;   // the learned parameters' gradients
};
const Backend kFp32{CudaPrecision::fp32, {1e-4, 1e-3}, {3e-4, 3e-3}};
const Backend kBf16{CudaPrecision::bf16, {1e-2, 5e-2}, {1e-1, 5e-1}};
const std::vector<Backend> kBothPrecisions = {kFp32, kBf16};

// The worst errors of one kind of tensor, for the log.
struct Worst {
  double rms = 0, max = 0;
  std::string rms_name, max_name;
  std::string str() const {
    return fmt::format("rms {:.1e} ({}) max {:.1e} ({})", rms, rms_name, max, max_name);
  }
};

// Compares one CUDA result with the reference as described above; returns the worst errors of
// the activations and of the parameter gradients, for the log.
std::string compare(const AttentionResult& got, const AttentionResult& ref, const Backend& b,
                    const std::string& what) {
  Worst act, par;
  auto one = [&](const std::vector<double>& g, const std::vector<double>& r,
                 const std::string& name, double scale, bool parameter) {
    const gpu_test::ErrorMeasure m = gpu_test::measure_error(g, r, scale);
    const Tolerance& tol = parameter ? b.parameters : b.activations;
    const std::string where =
        fmt::format("{} {}: {} values, max |cpu| {}{}", what, name, r.size(),
                    gpu_test::max_finite_abs(r), scale > 0 ? fmt::format(", scale {}", scale) : "");
    EXPECT_EQ(g.size(), r.size()) << where;
    EXPECT_LE(m.rms, tol.rms) << where << ": root mean square error " << m.rms;
    EXPECT_LE(m.max, tol.max) << where << ": largest error " << m.max << " at element " << m.worst
                              << ": cuda " << (m.worst < g.size() ? g[m.worst] : NAN) << ", cpu "
                              << (m.worst < r.size() ? r[m.worst] : NAN);
    Worst& w = parameter ? par : act;
    if (m.rms >= w.rms) {
      w.rms = m.rms;
      w.rms_name = name;
    }
    if (m.max >= w.max) {
      w.max = m.max;
      w.max_name = name;
    }
  };
  one(got.out, ref.out, "out", 0, false);
  one(got.lse, ref.lse, "lse", 0, false);
  EXPECT_EQ(got.grads.size(), ref.grads.size()) << what;
  // Gradients are judged against the largest of their group: q, k, v (dq and dk are zero when a
  // row has one key, the softmax of one logit), and each learned component (dape_*, fire_*,
  // kerple_*: f's b2, and FIRE's without DAPE, add a constant to a head's logits and get zero
  // gradient). Zero gradients hold only the rounding noise of sums whose terms cancel.
  auto group = [](const std::string& name) {
    return name.size() == 1 ? std::string("qkv") : name.substr(0, name.find('_'));
  };
  std::map<std::string, double> group_scale;
  for (const auto& [name, r] : ref.grads)
    group_scale[group(name)] = std::max(group_scale[group(name)], gpu_test::max_finite_abs(r));
  for (const auto& [name, r] : ref.grads) {
    const auto it = got.grads.find(name);
    if (it == got.grads.end()) {
      ADD_FAILURE() << what << ": no gradient " << name;
      continue;
    }
    one(it->second, r, "d" + name, group_scale[group(name)], name.size() > 1);
  }
  EXPECT_EQ(got.layout_violation, "") << what;
  return par.rms_name.empty() ? act.str() : act.str() + ", parameters " + par.str();
}

void expect_same_bits(const AttentionResult& a, const AttentionResult& b, const std::string& what) {
  gpu_test::expect_bitwise_equal(a.out, b.out, what + " out");
  gpu_test::expect_bitwise_equal(a.lse, b.lse, what + " lse");
  for (const auto& [name, g] : a.grads) {
    const auto it = b.grads.find(name);
    ASSERT_NE(it, b.grads.end()) << what << " d" << name;
    gpu_test::expect_bitwise_equal(g, it->second, what + " d" + name);
  }
}

// Runs every case on the CPU reference once and on CUDA (twice) in each of `backends`.
void check_cases(const std::vector<AttentionCase>& cases, const std::vector<Backend>& backends) {
  CpuOps cpu(DType::f64);
  std::vector<std::unique_ptr<Ops>> cuda;
  for (const Backend& b : backends) cuda.push_back(gpu_test::cuda_ops(b.precision));
  for (const AttentionCase& c : cases) {
    SCOPED_TRACE(c.name());
    const AttentionRun run(c, 1000);
    const AttentionResult ref = run.run(cpu, AttentionImpl::reference);
    ASSERT_EQ(ref.layout_violation, "") << "the CPU reference";
    std::string line = fmt::format("  {:<44}", c.name());
    for (size_t i = 0; i < backends.size(); ++i) {
      const std::string what =
          fmt::format("{} {}", c.name(), cuda_precision_name(backends[i].precision));
      const AttentionResult first = run.run(*cuda[i], AttentionImpl::fused);
      const AttentionResult second = run.run(*cuda[i], AttentionImpl::fused);
      line += fmt::format(" {} {}", cuda_precision_name(backends[i].precision),
                          compare(first, ref, backends[i], what));
      expect_same_bits(first, second, what);
    }
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
}

struct SchemeCase {
  PositionScheme scheme;
  bool dape;
};

std::string scheme_case_label(const SchemeCase& c) {
  return std::string(position_scheme_name(c.scheme)) + (c.dape ? "_dape" : "");
}

// gtest prints a case (and CTest's test names show it) by its label.
void PrintTo(const SchemeCase& c, std::ostream* os) {
  *os << scheme_case_label(c);
}

std::string scheme_case_name(const ::testing::TestParamInfo<SchemeCase>& info) {
  return scheme_case_label(info.param);
}

class CudaAttention : public ::testing::TestWithParam<SchemeCase> {};

TEST_P(CudaAttention, MatchesCpuReferenceAcrossLengths) {
  DAPE_SKIP_WITHOUT_CUDA();
  std::vector<AttentionCase> cases;
  for (auto [H, D] : {std::pair{3, 32}, std::pair{12, 64}})
    for (int N : {1, 2, 63, 64, 65, 127}) {
      AttentionCase c;
      c.scheme = GetParam().scheme;
      c.dape = GetParam().dape;
      c.B = 2;
      c.N = N;
      c.H = H;
      c.D = D;
      cases.push_back(c);
    }
  check_cases(cases, kBothPrecisions);
}

TEST_P(CudaAttention, MatchesCpuReferenceAtLength1000) {
  DAPE_SKIP_WITHOUT_CUDA();
  AttentionCase c;
  c.scheme = GetParam().scheme;
  c.dape = GetParam().dape;
  c.B = 1;
  c.N = 1000;
  c.H = 12;
  c.D = 64;
  check_cases({c}, kBothPrecisions);
}

INSTANTIATE_TEST_SUITE_P(Schemes, CudaAttention,
                         ::testing::Values(SchemeCase{PositionScheme::none, false},
                                           SchemeCase{PositionScheme::none, true},
                                           SchemeCase{PositionScheme::alibi, false},
                                           SchemeCase{PositionScheme::alibi, true},
                                           SchemeCase{PositionScheme::kerple, false},
                                           SchemeCase{PositionScheme::kerple, true},
                                           SchemeCase{PositionScheme::fire, false},
                                           SchemeCase{PositionScheme::fire, true},
                                           SchemeCase{PositionScheme::rope, false},
                                           SchemeCase{PositionScheme::rope, true}),
                         scheme_case_name);

AttentionCase make_case(PositionScheme scheme, bool dape, int B, int N, int H, int D) {
  AttentionCase c;
  c.scheme = scheme;
  c.dape = dape;
  c.B = B;
  c.N = N;
  c.H = H;
  c.D = D;
  return c;
}

TEST(CudaAttentionShapes, MixedHeadsAndHeadDims) {
  DAPE_SKIP_WITHOUT_CUDA();
  check_cases({make_case(PositionScheme::kerple, true, 2, 65, 12, 32),
               make_case(PositionScheme::fire, true, 2, 127, 3, 64),
               make_case(PositionScheme::alibi, true, 3, 100, 12, 32),
               make_case(PositionScheme::none, false, 1, 200, 3, 64)},
              kBothPrecisions);
}

// Decoding with a KV cache: 1 new token over a long context, a chunk of new tokens, a prompt
// longer than one tile; keys in [B, capacity, H, D] buffers.
TEST(CudaAttentionShapes, DecodingWithMoreKeysThanQueries) {
  DAPE_SKIP_WITHOUT_CUDA();
  std::vector<AttentionCase> cases;
  for (auto [scheme, dape, N, M] : {std::tuple{PositionScheme::kerple, true, 1, 1000},
                                    std::tuple{PositionScheme::rope, true, 7, 130},
                                    std::tuple{PositionScheme::fire, true, 64, 200},
                                    std::tuple{PositionScheme::alibi, false, 1, 65},
                                    std::tuple{PositionScheme::none, true, 3, 64}}) {
    AttentionCase c = make_case(scheme, dape, 2, N, 12, 64);
    c.M = M;
    c.layout = AttentionLayout::kv_cache;
    cases.push_back(c);
  }
  check_cases(cases, kBothPrecisions);
}

// Tensor parallelism: q and k of all 12 heads, v, out, lse and dv of the local heads only; dq,
// dk and the parameter gradients are this call's share.
TEST(CudaAttentionShapes, LocalHeadRange) {
  DAPE_SKIP_WITHOUT_CUDA();
  std::vector<AttentionCase> cases;
  for (auto [scheme, dape, begin, count] :
       {std::tuple{PositionScheme::kerple, true, 4, 4},
        std::tuple{PositionScheme::fire, true, 0, 3}, std::tuple{PositionScheme::rope, true, 9, 3},
        std::tuple{PositionScheme::alibi, false, 6, 6}}) {
    AttentionCase c = make_case(scheme, dape, 2, 127, 12, 64);
    c.layout = AttentionLayout::tensor_parallel;
    c.head_begin = begin;
    c.local_heads = count;
    cases.push_back(c);
  }
  // A head range in the training layout and in a cache (decoding under tensor parallelism).
  AttentionCase t = make_case(PositionScheme::kerple, true, 2, 65, 12, 32);
  t.head_begin = 3;
  t.local_heads = 6;
  cases.push_back(t);
  AttentionCase d = make_case(PositionScheme::alibi, true, 2, 5, 12, 64);
  d.M = 100;
  d.layout = AttentionLayout::kv_cache;
  d.head_begin = 8;
  d.local_heads = 4;
  cases.push_back(d);
  check_cases(cases, kBothPrecisions);
}

// Row strides that are not a multiple of anything and padding rows between sequences: the
// interface allows any strides, and the kernel must either honour them or refuse them (an
// error, which fails this test and says what is unsupported).
TEST(CudaAttentionShapes, ArbitraryStrides) {
  DAPE_SKIP_WITHOUT_CUDA();
  std::vector<AttentionCase> cases;
  AttentionCase a = make_case(PositionScheme::kerple, true, 2, 65, 3, 32);
  a.layout = AttentionLayout::odd_strides;
  cases.push_back(a);
  AttentionCase b = make_case(PositionScheme::fire, true, 2, 9, 3, 32);
  b.layout = AttentionLayout::odd_strides;
  b.M = 70;
  cases.push_back(b);
  check_cases(cases, {kFp32});
}

// ---- the shared golden files ------------------------------------------------------------------

std::vector<std::string> golden_files() {
  std::vector<std::string> files;
  for (const char* dir : {"/tests/data/golden", "/tests/data/golden/pytorch"})
    for (const auto& e : std::filesystem::directory_iterator(std::string(DAPE_SOURCE_DIR) + dir))
      if (e.is_regular_file() && e.path().extension() == ".safetensors")
        files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(CudaAttentionGolden, EveryFilePassesInFp32) {
  DAPE_SKIP_WITHOUT_CUDA();
  const auto files = golden_files();
  // 11 files of the independent float64 implementation, 10 of PyTorch's.
  ASSERT_GE(files.size(), 21u);
  auto ops = gpu_test::cuda_ops(CudaPrecision::fp32);
  for (const auto& f : files) {
    const GoldenResult r = check_attention_golden(f, *ops, AttentionImpl::fused);
    EXPECT_TRUE(r.pass) << format_golden_result(r);
    std::printf("%s %s\n", r.pass ? "pass" : "FAIL", f.c_str());
  }
}

}  // namespace
}  // namespace dape
