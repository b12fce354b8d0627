// The CUDA fused attention's thread blocks (kernels/cuda/attention_tile.cuh), run on the host by
// HostBlock: the same code as on the GPU, phase by phase, each phase for every thread in turn.
// Checked against the materialized reference (itself checked against finite differences and the
// golden files) and the golden files, for every scheme with and without DAPE, at lengths around
// the tile sizes, with keys beyond the queries, strided and padded k/v buffers, head ranges,
// shared-memory limits small enough to force several head groups, chunks of f and few staged
// heads; with the threads of every phase run last-to-first too (a read of another thread's write
// within a phase would change the results); and in bf16 mode, whose tensor-core GEMMs the host
// replaces by the same products of bf16 values summed in float, and whose data flow is checked
// exactly with float values in bf16's buffers (ExactBf16Mode).
//
// What the host cannot show: the tensor-core fragments themselves (nvcuda::wmma loads, stores
// and layouts in tile_gemm), DeviceBlock, and the launches; those run only on a GPU.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "core/golden/attention_golden.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/attention_fused_args.h"
#include "kernels/cuda/attention_tile.cuh"
#include "tests/unit/attention_problem.h"

namespace dape {
namespace {

using test::AttentionCase;
using test::AttentionProblem;
namespace tiling = dape::attention_tiling;

constexpr int64_t kSm90SharedMemory = 232448;  // 227 KB
constexpr int64_t kSm80SharedMemory = 166912;  // 163 KB

enum class Precision { fp32, bf16, exact_bf16 };

struct Emulation {
  Precision precision = Precision::fp32;
  // Shared memory per block: the device's, or one per kernel (forward, dq, dk/dv) when set.
  int64_t smem_limit = kSm90SharedMemory;
  std::array<int64_t, 3> kernel_limits{};
  bool reversed = false;  // every phase's threads last to first

  int64_t limit(tiling::TileKernel kernel) const {
    const int64_t own = kernel_limits[static_cast<int>(kernel)];
    return own > 0 ? own : smem_limit;
  }
};

// The layout a launcher would plan; exact_bf16 has bf16's buffers with 4-byte operands.
tiling::TileLayout layout_for(tiling::TileKernel kernel, const cuda::AttentionKernelParams& p,
                              const Emulation& e) {
  if (e.precision != Precision::exact_bf16)
    return cuda::plan_layout(kernel, p, e.precision == Precision::bf16, e.limit(kernel));
  tiling::TileDims d = cuda::tile_dims(p, true);
  d.operand_bytes = 4;
  tiling::TileLayout L;
  DAPE_CHECK(tiling::plan_tile_layout(kernel, d, p.grad.total, e.limit(kernel), &L),
             "no exact_bf16 layout fits {} bytes", e.limit(kernel));
  return L;
}

// Shared memory of one block, NaN-filled before each block so that anything the block reads
// without having written it shows.
class BlockMemory {
 public:
  explicit BlockMemory(int64_t bytes) : words_(static_cast<size_t>(bytes / 8 + 16)) {}
  unsigned char* fresh() {
    std::fill(words_.begin(), words_.end(), std::numeric_limits<double>::quiet_NaN());
    return reinterpret_cast<unsigned char*>(words_.data());
  }

 private:
  std::vector<double> words_;
};

template <class Mode>
void emulate_forward(const cuda::AttentionKernelParams& p, const Emulation& e) {
  BlockMemory smem(p.layout.bytes);
  const cuda::tile::HostBlock blk{e.reversed};
  for (int g = 0; g < p.layout.groups; ++g)
    for (int x = 0; x < cuda::forward_blocks(p); ++x)
      cuda::tile::forward_block<Mode>(blk, p, smem.fresh(), x, g);
}

template <class Mode>
void emulate_backward(const cuda::AttentionKernelParams& dq,
                      const cuda::AttentionKernelParams& dkdv, const Emulation& e) {
  const cuda::tile::HostBlock blk{e.reversed};
  const int blocks = cuda::dq_blocks(dq);
  std::vector<double> partials(static_cast<size_t>(blocks) * dq.grad.total,
                               std::numeric_limits<double>::quiet_NaN());
  cuda::AttentionKernelParams with_partials = dq;
  with_partials.partials = partials.data();
  BlockMemory dq_smem(dq.layout.bytes), dkdv_smem(dkdv.layout.bytes);
  for (int g = 0; g < dq.layout.groups; ++g)
    for (int x = 0; x < blocks; ++x)
      cuda::tile::dq_block<Mode>(blk, with_partials, dq_smem.fresh(), x, blocks, g);
  for (int g = 0; g < dkdv.layout.groups; ++g)
    for (int x = 0; x < cuda::dkdv_blocks(dkdv); ++x)
      cuda::tile::dkdv_block<Mode>(blk, dkdv, dkdv_smem.fresh(), x, g);
  for (int i = 0; i < dq.grad.total; ++i) cuda::tile::reduce_gradient(with_partials, i, blocks);
}

// CpuOps (float32) except for the fused attention, which runs the emulated CUDA blocks on the
// host tensors. Also records the layouts the last calls used.
class EmulatedCudaOps final : public Ops {
 public:
  explicit EmulatedCudaOps(Emulation e) : cpu_(DType::f32, 2), e_(e) {}

  std::string name() const override { return "emulated-cuda"; }
  DType float_dtype() const override { return cpu_.float_dtype(); }
  void* allocate(int64_t bytes) override { return cpu_.allocate(bytes); }
  void deallocate(void* p) override { cpu_.deallocate(p); }
  void copy_from_host(const Tensor& dst, const void* src, DType host_dtype) override {
    cpu_.copy_from_host(dst, src, host_dtype);
  }
  void copy_to_host(void* dst, DType host_dtype, const Tensor& src) override {
    cpu_.copy_to_host(dst, host_dtype, src);
  }
  void copy(const Tensor& dst, const Tensor& src) override { cpu_.copy(dst, src); }
  void copy_2d(const Tensor& dst, int64_t dst_stride, const Tensor& src, int64_t src_stride,
               int64_t rows, int64_t cols) override {
    cpu_.copy_2d(dst, dst_stride, src, src_stride, rows, cols);
  }
  void fill(const Tensor& x, double value) override { cpu_.fill(x, value); }
  void scale(const Tensor& x, double factor) override { cpu_.scale(x, factor); }
  void add(const Tensor& out, const Tensor& a, const Tensor& b) override { cpu_.add(out, a, b); }
  void clamp_min(const Tensor& x, double lo) override { cpu_.clamp_min(x, lo); }
  double sum_squares(const Tensor& x) override { return cpu_.sum_squares(x); }
  void embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& wte,
                         const Tensor& wpe, int seq_len, int pos_offset,
                         int64_t vocab_begin) override {
    cpu_.embedding_forward(out, tokens, wte, wpe, seq_len, pos_offset, vocab_begin);
  }
  void embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                          const Tensor& tokens, int seq_len, int pos_offset,
                          int64_t vocab_begin) override {
    cpu_.embedding_backward(dwte, dwpe, dout, tokens, seq_len, pos_offset, vocab_begin);
  }
  void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                         const Tensor& w, const Tensor& b) override {
    cpu_.layernorm_forward(out, mean, rstd, x, w, b);
  }
  void layernorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& db, const Tensor& dout,
                          const Tensor& x, const Tensor& w, const Tensor& mean,
                          const Tensor& rstd) override {
    cpu_.layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
  }
  void matmul_forward(const Tensor& out, const Tensor& x, const Tensor& w,
                      const Tensor& b) override {
    cpu_.matmul_forward(out, x, w, b);
  }
  void matmul_backward(const Tensor& dx, const Tensor& dw, const Tensor& db, const Tensor& dout,
                       const Tensor& x, const Tensor& w, bool accumulate_dx) override {
    cpu_.matmul_backward(dx, dw, db, dout, x, w, accumulate_dx);
  }
  void gelu_forward(const Tensor& out, const Tensor& x) override { cpu_.gelu_forward(out, x); }
  void gelu_backward(const Tensor& dx, const Tensor& x, const Tensor& dout) override {
    cpu_.gelu_backward(dx, x, dout);
  }
  void rope_forward(const Tensor& q, const Tensor& k, const AttentionShape& shape, int pos_offset,
                    double base) override {
    cpu_.rope_forward(q, k, shape, pos_offset, base);
  }
  void rope_backward(const Tensor& dq, const Tensor& dk, const AttentionShape& shape,
                     int pos_offset, double base) override {
    cpu_.rope_backward(dq, dk, shape, pos_offset, base);
  }
  bool has_attention(AttentionImpl) const override { return true; }
  void attention_forward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                         AttentionImpl impl) override {
    if (impl != AttentionImpl::fused) return cpu_.attention_forward(in, out, lse, impl);
    cuda::AttentionKernelParams p = cuda::attention_kernel_inputs(in);
    cuda::set_forward_outputs(&p, out, lse);
    p.layout = layout_for(tiling::TileKernel::forward, p, e_);
    forward_layout = p.layout;
    switch (e_.precision) {
      case Precision::fp32:
        return emulate_forward<cuda::tile::Fp32Mode>(p, e_);
      case Precision::bf16:
        return emulate_forward<cuda::tile::Bf16Mode>(p, e_);
      case Precision::exact_bf16:
        return emulate_forward<cuda::tile::ExactBf16Mode>(p, e_);
    }
  }
  void attention_backward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                          const Tensor& dout, const AttentionGrads& grads,
                          AttentionImpl impl) override {
    if (impl != AttentionImpl::fused)
      return cpu_.attention_backward(in, out, lse, dout, grads, impl);
    cuda::AttentionKernelParams p = cuda::attention_kernel_inputs(in);
    cuda::set_backward_tensors(&p, in, out, lse, dout, grads);
    cuda::AttentionKernelParams dq = p, dkdv = p;
    dq.layout = layout_for(tiling::TileKernel::dq, p, e_);
    dkdv.layout = layout_for(tiling::TileKernel::dkdv, p, e_);
    dq_layout = dq.layout;
    dkdv_layout = dkdv.layout;
    switch (e_.precision) {
      case Precision::fp32:
        return emulate_backward<cuda::tile::Fp32Mode>(dq, dkdv, e_);
      case Precision::bf16:
        return emulate_backward<cuda::tile::Bf16Mode>(dq, dkdv, e_);
      case Precision::exact_bf16:
        return emulate_backward<cuda::tile::ExactBf16Mode>(dq, dkdv, e_);
    }
  }
  void cross_entropy(const Tensor& losses, const Tensor& logits, const Tensor& targets, int vocab,
                     double grad_scale) override {
    cpu_.cross_entropy(losses, logits, targets, vocab, grad_scale);
  }
  void cross_entropy_slice_stats(const Tensor& stats, const Tensor& logits, const Tensor& targets,
                                 int64_t vocab_begin, int vocab) override {
    cpu_.cross_entropy_slice_stats(stats, logits, targets, vocab_begin, vocab);
  }
  void cross_entropy_from_slice_stats(const Tensor& losses, const Tensor& logits,
                                      const Tensor& all_stats, const Tensor& targets,
                                      int64_t vocab_begin, int vocab, double grad_scale) override {
    cpu_.cross_entropy_from_slice_stats(losses, logits, all_stats, targets, vocab_begin, vocab,
                                        grad_scale);
  }
  void adamw(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v,
             const AdamWHyper& h) override {
    cpu_.adamw(params, grads, m, v, h);
  }

  tiling::TileLayout forward_layout, dq_layout, dkdv_layout;

 private:
  CpuOps cpu_;
  Emulation e_;
};

// Every output of a run agrees with the reference: out, lse, dq, dk, dv to `tol` ·
// max(1, max|reference|), the parameters' gradients (sums over all pairs) to `param_tol`.
void expect_agree(const AttentionProblem::Result& got, const AttentionProblem::Result& ref,
                  double tol, double param_tol, const std::string& what) {
  EXPECT_LE(test::scaled_error(got.out, ref.out), tol) << what << ": out";
  EXPECT_LE(test::scaled_error(got.lse, ref.lse), tol) << what << ": lse";
  ASSERT_EQ(got.grads.size(), ref.grads.size()) << what;
  for (const auto& [name, g] : ref.grads) {
    const bool activation = name == "q" || name == "k" || name == "v";
    EXPECT_LE(test::scaled_error(got.grads.at(name), g), activation ? tol : param_tol)
        << what << ": grad " << name;
  }
  EXPECT_TRUE(got.padding_intact) << what << ": wrote outside dq, dk or dv";
}

std::vector<AttentionCase> every_scheme(int B, int N, int H, int D) {
  std::vector<AttentionCase> cases;
  for (auto s : {PositionScheme::none, PositionScheme::learned, PositionScheme::rope,
                 PositionScheme::alibi, PositionScheme::kerple, PositionScheme::fire})
    for (bool dape : {false, true}) {
      AttentionCase c;
      c.scheme = s;
      c.dape = dape;
      c.B = B;
      c.N = N;
      c.H = H;
      c.D = D;
      c.fire_L = 20.0f;  // thresholds inside the lengths tested: both sides of max(i, thr)
      c.fire_leaky = dape;
      cases.push_back(c);
    }
  return cases;
}

// The float64 reference of a case (the truth the float32 emulation is held to).
AttentionProblem::Result reference(const AttentionProblem& p) {
  CpuOps ops(DType::f64, 2);
  return p.run(ops, true, 0.25, AttentionImpl::reference);
}

AttentionProblem::Result emulated(const AttentionProblem& p, const Emulation& e) {
  EmulatedCudaOps ops(e);
  return p.run(ops, true, 0.25, AttentionImpl::fused);
}

class EmulatedCudaAttention : public ::testing::TestWithParam<int> {};

TEST_P(EmulatedCudaAttention, Fp32MatchesTheReferenceForEveryScheme) {
  const int N = GetParam();
  for (const auto& c : every_scheme(2, N, 3, 8)) {
    AttentionProblem p(c, 40 + N);
    expect_agree(emulated(p, Emulation{}), reference(p), 1e-5, 1e-5, c.name());
  }
}

std::string length_name(const ::testing::TestParamInfo<int>& p) {
  return fmt::format("N{}", p.param);
}

// Around the 16-row tiles: one row, one tile, one more, several.
INSTANTIATE_TEST_SUITE_P(Lengths, EmulatedCudaAttention, ::testing::Values(1, 15, 16, 17, 50),
                         length_name);

// Decoding (keys beyond the queries), separate padded k/v buffers, head ranges, head dimensions
// that are not multiples of 16, and several heads per staged batch.
TEST(EmulatedCudaAttention, KeyOffsetsStridesHeadRangesAndHeadDimensions) {
  std::vector<AttentionCase> cases;
  for (auto c : every_scheme(2, 5, 4, 8)) {
    AttentionCase decode = c;
    decode.M = 37;  // 5 queries at positions 32..36: a key tile boundary inside the keys
    cases.push_back(decode);
    AttentionCase one = c;
    one.N = 1;
    one.M = 40;
    cases.push_back(one);
    AttentionCase separate = c;
    separate.N = 33;
    separate.separate_kv = true;
    separate.D = 6;  // even, for rope
    cases.push_back(separate);
    AttentionCase heads = c;
    heads.N = 20;
    heads.H = 5;
    heads.head_begin = 1;
    heads.local_heads = 3;
    heads.D = 20;
    cases.push_back(heads);
  }
  for (const auto& c : cases) {
    AttentionProblem p(c, 7);
    expect_agree(emulated(p, Emulation{}), reference(p), 1e-5, 1e-5, c.name());
  }
}

// Per-kernel limits at the smallest layout of each kernel with `groups` head groups (f one
// chunk of 16 pairs at a time, one staged head): exactly what the planner must then pick.
std::array<int64_t, 3> limits_forcing(const AttentionProblem& p, int groups, Precision precision) {
  const AttentionCase& c = p.config();
  tiling::TileDims d;
  d.H = c.H;
  d.Hl = c.local();
  d.D = c.D;
  d.W = c.dape ? c.W : 0;
  d.G = c.scheme == PositionScheme::fire ? c.G : 0;
  d.kerple = c.scheme == PositionScheme::kerple;
  d.fire = c.scheme == PositionScheme::fire;
  d.bf16 = precision != Precision::fp32;
  d.operand_bytes = precision == Precision::exact_bf16 ? 4 : 0;
  const int grad_total =
      tiling::make_grad_layout(c.dape, c.W, c.H, c.local(), d.kerple, d.fire, c.G).total;
  std::array<int64_t, 3> limits{};
  for (auto kernel :
       {tiling::TileKernel::forward, tiling::TileKernel::dq, tiling::TileKernel::dkdv}) {
    const int total = kernel == tiling::TileKernel::forward ? d.Hl : d.H;
    const int group = tiling::ceil_div(total, groups);
    limits[static_cast<int>(kernel)] =
        tiling::make_tile_layout(kernel, d, group, 16, 1, grad_total).bytes;
  }
  return limits;
}

// Shared-memory limits that force several head groups, f in chunks of 16 pairs (and, in
// backward, recomputed per chunk) and one staged head; the results must not change.
TEST(EmulatedCudaAttention, SmallSharedMemoryLayoutsGiveTheSameResults) {
  for (const auto& base : every_scheme(1, 35, 6, 64)) {
    AttentionCase c = base;
    c.W = 20;
    c.head_begin = 1;
    c.local_heads = 4;
    AttentionProblem p(c, 11);
    const auto ref = reference(p);
    for (int groups : {2, 3}) {
      Emulation e;
      e.kernel_limits = limits_forcing(p, groups, Precision::fp32);
      EmulatedCudaOps ops(e);
      const auto got = p.run(ops, true, 0.25, AttentionImpl::fused);
      const std::string what = c.name() + " groups " + std::to_string(groups);
      expect_agree(got, ref, 1e-5, 1e-5, what);
      // The limits force what they are for (4 local heads in 3 groups of 2 are 2 groups).
      for (const auto* L : {&ops.forward_layout, &ops.dq_layout, &ops.dkdv_layout}) {
        const int total = L == &ops.forward_layout ? c.local() : c.H;
        EXPECT_EQ(L->groups, tiling::ceil_div(total, tiling::ceil_div(total, groups))) << what;
        EXPECT_GT(L->groups, 1) << what;
        EXPECT_EQ(L->stage_heads, 1) << what;
        if (c.dape) {
          EXPECT_EQ(L->chunk, 16) << what;
        }
      }
    }
  }
}

// Within a phase no thread reads what another writes: running every phase's threads in reverse
// order gives bitwise the same results.
TEST(EmulatedCudaAttention, ThreadOrderDoesNotMatter) {
  for (const auto& base : every_scheme(2, 21, 3, 8)) {
    for (bool bf16 : {false, true}) {
      AttentionCase c = base;
      c.M = 40;
      c.separate_kv = true;
      AttentionProblem p(c, 5);
      Emulation forward_order, reverse_order;
      forward_order.precision = reverse_order.precision = bf16 ? Precision::bf16 : Precision::fp32;
      // Several groups, chunks and staged batches too.
      forward_order.kernel_limits = reverse_order.kernel_limits =
          limits_forcing(p, 2, forward_order.precision);
      reverse_order.reversed = true;
      const auto a = emulated(p, forward_order);
      const auto b = emulated(p, reverse_order);
      const std::string what = c.name() + (bf16 ? " bf16" : " fp32");
      EXPECT_EQ(a.out, b.out) << what;
      EXPECT_EQ(a.lse, b.lse) << what;
      EXPECT_EQ(a.grads, b.grads) << what;
    }
  }
}

// The paper's shape of a head (H = 12, D = 64, W = 32) at a length of several tiles, with the
// layouts the planner picks for sm_80 and sm_90.
TEST(EmulatedCudaAttention, PaperShapeOnBothDeviceLimits) {
  for (auto s : {PositionScheme::alibi, PositionScheme::kerple, PositionScheme::fire}) {
    AttentionCase c;
    c.scheme = s;
    c.dape = true;
    c.B = 1;
    c.N = 40;
    c.H = 12;
    c.D = 64;
    c.W = 32;
    c.G = 32;
    c.fire_L = 20.0f;
    c.fire_leaky = true;
    AttentionProblem p(c, 3);
    const auto ref = reference(p);
    for (int64_t limit : {kSm80SharedMemory, kSm90SharedMemory}) {
      Emulation e;
      e.smem_limit = limit;
      expect_agree(emulated(p, e), ref, 1e-5, 1e-5, c.name() + " limit " + std::to_string(limit));
    }
  }
}

// bf16 mode's data flow (operand buffers of their own, converted chunk by chunk; the tensor-core
// GEMM's 16×16 tiles) with float values: it must agree with the reference as closely as fp32
// mode does, which shows every operand reaches its GEMM where bf16 mode puts it.
TEST(EmulatedCudaAttention, Bf16DataFlowWithFloatValuesMatchesTheReference) {
  for (const auto& c : every_scheme(2, 37, 3, 8)) {
    AttentionProblem p(c, 9);
    const auto ref = reference(p);
    for (bool small : {false, true}) {
      Emulation e;
      e.precision = Precision::exact_bf16;
      if (small) e.kernel_limits = limits_forcing(p, 2, Precision::exact_bf16);
      expect_agree(emulated(p, e), ref, 1e-5, 1e-5,
                   c.name() + (small ? " exact bf16, small layouts" : " exact bf16"));
    }
  }
}

// bf16 mode proper: GEMM operands rounded to bf16 (8 significant bits, a relative error of up
// to 2^-9 each). Outputs and per-row quantities stay within 3e-2 of their scale. f's weight and
// bias gradients are sums over all N(N+1)/2 pairs of terms that cancel (dA sums to zero over each
// row) and whose LeakyReLU'(z) flips where rounding moves z across 0; measured up to 7e-2 of
// max(1, max|gradient|) at N = 37, they are held to 1e-1.
// bf16 mode proper: GEMM operands rounded to bf16 (8 significant bits), f at the model's
// initial scale (PyTorch's U(±1/sqrt(fan_in))). Measured over 10 seeds of these 12 cases: out,
// lse, dq, dk, dv within 1.4e-2 of max(1, max|reference|), held to 3e-2. The parameter gradients
// are sums over all N(N+1)/2 pairs of terms that cancel (dA sums to zero over each row), so
// they are ill-conditioned: perturbing the inputs alone by a relative 2^-9 moves f's by up to
// 1e-1 in float64; measured within 2.1e-1 in bf16 mode, held to 3e-1. (The data flow itself is
// checked to 1e-5 by Bf16DataFlowWithFloatValuesMatchesTheReference.)
TEST(EmulatedCudaAttention, Bf16IsCloseToTheReference) {
  for (const auto& c : every_scheme(2, 37, 3, 8)) {
    AttentionProblem p(c, 9);
    if (c.dape) {
      for (const char* n : {"dape_w1", "dape_b1"})
        for (double& x : p.values[n]) x /= std::sqrt(2.0 * c.H);
      for (const char* n : {"dape_w2", "dape_b2"})
        for (double& x : p.values[n]) x /= std::sqrt(static_cast<double>(c.W));
    }
    Emulation e;
    e.precision = Precision::bf16;
    expect_agree(emulated(p, e), reference(p), 3e-2, 3e-1, c.name() + " bf16");
  }
}

// The golden files (independent float64 PyTorch implementation) through the emulated kernels,
// fp32 mode, and bf16 mode with its own tolerance.
TEST(EmulatedCudaAttention, GoldenFilesPass) {
  std::vector<std::string> files;
  for (const char* dir :
       {DAPE_SOURCE_DIR "/tests/data/golden/pytorch", DAPE_SOURCE_DIR "/tests/data/golden"})
    for (const auto& entry : std::filesystem::directory_iterator(dir))
      if (entry.path().extension() == ".safetensors") files.push_back(entry.path().string());
  ASSERT_GE(files.size(), 16u);
  EmulatedCudaOps ops(Emulation{});
  for (const auto& f : files) {
    const GoldenResult r = check_attention_golden(f, ops, AttentionImpl::fused);
    EXPECT_TRUE(r.pass) << format_golden_result(r);
  }
}

TEST(EmulatedCudaAttention, RefusesShapesBeyondTheKernelsLimits) {
  auto expect_refused = [](AttentionCase c, const std::string& needle) {
    AttentionProblem p(c, 1);
    EmulatedCudaOps ops(Emulation{});
    test::expect_error([&] { p.run(ops, false, 0.0, AttentionImpl::fused); }, {needle});
  };
  AttentionCase heads;
  heads.H = 33;
  expect_refused(heads, "33 heads");
  AttentionCase dim;
  dim.D = 129;
  expect_refused(dim, "D = 129");
  AttentionCase width;
  width.dape = true;
  width.W = 65;
  expect_refused(width, "width 65");
}

}  // namespace
}  // namespace dape
