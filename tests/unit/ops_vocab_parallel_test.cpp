// The ops tensor parallelism adds, against the whole-tensor ops they split: strided block copies
// against a loop, sliced embeddings summed over the slices against the whole table, and the
// vocabulary-parallel cross-entropy (slice stats, exchanged, combined) against cross_entropy on
// the whole row — losses and every gradient column — for 1 to 4 slices, in float and double.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/rng.h"
#include "kernels/cpu/cpu_ops.h"

namespace dape {
namespace {

std::vector<double> random_values(int64_t n, uint64_t stream, double scale = 1.0) {
  Rng rng(11, stream);
  std::vector<double> out(static_cast<size_t>(n));
  for (auto& x : out) x = scale * rng.normal();
  return out;
}

TEST(OpsVocabParallel, Copy2dMovesExactlyTheBlock) {
  CpuOps ops(DType::f32, 2);
  const int64_t rows = 5, cols = 3, src_stride = 7, dst_stride = 4;
  auto src = ops.float_buffer({rows * src_stride});
  auto dst = ops.float_buffer({rows * dst_stride});
  std::vector<float> s(rows * src_stride), d(rows * dst_stride, -1.f);
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<float>(i);
  upload(ops, src, s);
  upload(ops, dst, d);
  // The block starting at column 2 of src into column 1 of dst.
  ops.copy_2d(dst.tensor().slice(1, {rows * dst_stride - 1}), dst_stride,
              src.tensor().slice(2, {rows * src_stride - 2}), src_stride, rows, cols);
  const auto got = download<float>(ops, dst);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < dst_stride; ++c) {
      const float want = c >= 1 && c < 1 + cols ? s[r * src_stride + 2 + c - 1] : -1.f;
      EXPECT_EQ(got[r * dst_stride + c], want) << r << "," << c;
    }
}

TEST(OpsVocabParallel, SlicedEmbeddingsSumToTheWholeTable) {
  CpuOps ops(DType::f64, 2);
  const int64_t V = 10, C = 6, seq = 4, R = 8, P = 16;
  const std::vector<int32_t> tok = {0, 9, 3, 3, 7, 1, 5, 9};
  auto tokens = ops.buffer(DType::i32, {R});
  upload(ops, tokens, tok);
  auto wte = ops.float_buffer({V, C}), wpe = ops.float_buffer({P, C});
  upload(ops, wte, random_values(V * C, 1));
  upload(ops, wpe, random_values(P * C, 2));
  auto whole = ops.float_buffer({R, C});
  ops.embedding_forward(whole, tokens, wte, wpe, seq, 3);
  const auto want = download<double>(ops, whole);
  auto dout = ops.float_buffer({R, C});
  upload(ops, dout, random_values(R * C, 3));
  auto dwte = ops.float_buffer({V, C}), dwpe = ops.float_buffer({P, C});
  ops.fill(dwte, 0.0);
  ops.fill(dwpe, 0.0);
  ops.embedding_backward(dwte, dwpe, dout, tokens, seq, 3);
  const auto want_dwte = download<double>(ops, dwte);

  for (int slices : {1, 2, 3}) {
    std::vector<double> sum(static_cast<size_t>(R * C), 0.0), dsum(want_dwte.size(), 0.0);
    const int64_t rows_per = (V + slices - 1) / slices;
    for (int s = 0; s < slices; ++s) {
      const int64_t begin = s * rows_per, rows = std::min(V, begin + rows_per) - begin;
      const Tensor part = wte.tensor().slice(begin * C, {rows, C});
      auto out = ops.float_buffer({R, C});
      // The position embedding is added by slice 0 only.
      ops.embedding_forward(out, tokens, part, s == 0 ? wpe.tensor() : Tensor(), seq, 3, begin);
      const auto o = download<double>(ops, out);
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += o[i];
      auto dpart = ops.float_buffer({rows, C});
      ops.fill(dpart, 0.0);
      ops.embedding_backward(dpart, Tensor(), dout, tokens, seq, 3, begin);
      const auto d = download<double>(ops, dpart);
      for (int64_t i = 0; i < rows * C; ++i) dsum[begin * C + i] += d[i];
    }
    for (size_t i = 0; i < sum.size(); ++i) EXPECT_NEAR(sum[i], want[i], 1e-15) << slices;
    EXPECT_EQ(dsum, want_dwte) << slices;
  }
}

// Whole-row cross_entropy against the slices' version, with `slices` slices of the padded row.
void expect_slices_match_whole_row(DType dtype, int slices, double tol) {
  CpuOps ops(dtype, 2);
  const int64_t R = 9, vocab = 21, Vp = 24;
  const double grad_scale = 0.37;
  const std::vector<int32_t> tgt = {0, 20, 5, 7, 8, 15, 16, 3, 11};
  auto targets = ops.buffer(DType::i32, {R});
  upload(ops, targets, tgt);
  const auto values = random_values(R * Vp, 7, 4.0);
  auto whole = ops.float_buffer({R, Vp});
  upload(ops, whole, values);
  auto losses = ops.float_buffer({R});
  ops.cross_entropy(losses, whole, targets, vocab, grad_scale);
  const auto want_loss = download<double>(ops, losses);
  const auto want_grad = download<double>(ops, whole);

  const int64_t width = Vp / slices;
  ASSERT_EQ(width * slices, Vp);
  auto all_stats = ops.float_buffer({slices, R, 3});
  std::vector<DeviceBuffer> parts;
  for (int s = 0; s < slices; ++s) {
    parts.push_back(ops.float_buffer({R, width}));
    std::vector<double> part(static_cast<size_t>(R * width));
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < width; ++j) part[r * width + j] = values[r * Vp + s * width + j];
    upload(ops, parts.back(), part);
    ops.cross_entropy_slice_stats(all_stats.tensor().slice(s * R * 3, {R, 3}), parts.back(),
                                  targets, s * width, vocab);
  }
  for (int s = 0; s < slices; ++s) {
    auto l = ops.float_buffer({R});
    ops.cross_entropy_from_slice_stats(l, parts[s], all_stats, targets, s * width, vocab,
                                       grad_scale);
    const auto got_loss = download<double>(ops, l);
    for (int64_t r = 0; r < R; ++r)
      EXPECT_NEAR(got_loss[r], want_loss[r], tol * std::abs(want_loss[r])) << slices << " r" << r;
    const auto g = download<double>(ops, parts[s]);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < width; ++j)
        EXPECT_NEAR(g[r * width + j], want_grad[r * Vp + s * width + j], tol)
            << slices << " slices, row " << r << " column " << s * width + j;
  }
}

TEST(OpsVocabParallel, SliceStatsCrossEntropyEqualsTheWholeRowInDouble) {
  for (int slices : {1, 2, 3, 4}) expect_slices_match_whole_row(DType::f64, slices, 1e-12);
}

TEST(OpsVocabParallel, SliceStatsCrossEntropyEqualsTheWholeRowInFloat) {
  for (int slices : {1, 2, 3, 4}) expect_slices_match_whole_row(DType::f32, slices, 2e-6);
}

}  // namespace
}  // namespace dape
