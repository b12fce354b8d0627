/*
 * Argument checks of the Ops interface (kernels/ops_checks.h): one definition of each shape and
 * element-count check, so that CpuOps and CudaOps reject the same calls with the same messages.
 */
#include "kernels/ops_checks.h"

#include <algorithm>

#include "common/check.h"

namespace dape {

void expect_dtype(const Tensor& t, DType d, const char* what) {
  DAPE_CHECK(t.defined(), "{}: tensor is undefined", what);
  DAPE_CHECK(t.dtype == d, "{}: expected {}, got {}", what, dtype_name(d), dtype_name(t.dtype));
}

void expect_numel(const Tensor& t, int64_t n, const char* what) {
  DAPE_CHECK(t.numel() == n, "{}: expected {} elements, got {} ({})", what, n, t.numel(),
             t.shape.str());
}

void check_copy(const Tensor& dst, const Tensor& src) {
  DAPE_CHECK(dst.dtype == src.dtype && dst.numel() == src.numel(), "copy {} {} into {} {}",
             dtype_name(src.dtype), src.shape.str(), dtype_name(dst.dtype), dst.shape.str());
}

void check_copy_2d(const Tensor& dst, int64_t dst_stride, const Tensor& src, int64_t src_stride,
                   int64_t rows, int64_t cols) {
  DAPE_CHECK(dst.dtype == src.dtype, "copy_2d of {} into {}", dtype_name(src.dtype),
             dtype_name(dst.dtype));
  DAPE_CHECK(rows >= 0 && cols >= 0 && cols <= dst_stride && cols <= src_stride,
             "copy_2d of {} × {} with strides {} and {}", rows, cols, dst_stride, src_stride);
}

void check_add(const Tensor& out, const Tensor& a, const Tensor& b) {
  expect_numel(a, out.numel(), "add: a");
  expect_numel(b, out.numel(), "add: b");
}

RowsCols check_embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& wte,
                                 const Tensor& wpe) {
  expect_dtype(tokens, DType::i32, "embedding_forward: tokens");
  DAPE_CHECK(wte.shape.rank == 2, "embedding_forward: wte must be [V, C], got {}", wte.shape.str());
  const int64_t rows = tokens.numel(), C = wte.shape[1];
  expect_numel(out, rows * C, "embedding_forward: out");
  if (wpe.defined()) {
    DAPE_CHECK(wpe.shape.rank == 2 && wpe.shape[1] == C,
               "embedding_forward: wpe must be [P, {}], got {}", C, wpe.shape.str());
  }
  return {rows, C};
}

RowsCols check_embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                                  const Tensor& tokens) {
  expect_dtype(tokens, DType::i32, "embedding_backward: tokens");
  DAPE_CHECK(dwte.shape.rank == 2, "embedding_backward: dwte must be [V, C], got {}",
             dwte.shape.str());
  const int64_t rows = tokens.numel(), C = dwte.shape[1];
  expect_numel(dout, rows * C, "embedding_backward: dout");
  if (dwpe.defined()) {
    DAPE_CHECK(dwpe.shape.rank == 2 && dwpe.shape[1] == C,
               "embedding_backward: dwpe must be [P, {}], got {}", C, dwpe.shape.str());
  }
  return {rows, C};
}

void check_positions(int64_t rows, int64_t positions, int seq_len, int pos_offset,
                     const char* what) {
  DAPE_CHECK(seq_len > 0, "{}: seq_len {} must be positive with position embeddings", what,
             seq_len);
  DAPE_CHECK(pos_offset >= 0, "{}: negative position offset {} at row 0", what, pos_offset);
  if (rows == 0) return;
  const int64_t last_row = std::min<int64_t>(rows, seq_len) - 1;  // holds the largest position
  const int64_t last_pos = pos_offset + last_row;
  DAPE_CHECK(last_pos < positions,
             "{}: position {} (offset {} + {}) at row {} is outside the {} rows of wpe", what,
             last_pos, pos_offset, last_row, last_row, positions);
}

RowsCols check_layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                                 const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t C = w.numel();
  DAPE_CHECK(C > 0, "layernorm_forward: empty weight");
  const int64_t rows = x.numel() / C;
  DAPE_CHECK(rows * C == x.numel(), "layernorm_forward: {} elements are not rows of {}", x.numel(),
             C);
  expect_numel(b, C, "layernorm_forward: b");
  expect_numel(out, x.numel(), "layernorm_forward: out");
  expect_numel(mean, rows, "layernorm_forward: mean");
  expect_numel(rstd, rows, "layernorm_forward: rstd");
  return {rows, C};
}

RowsCols check_layernorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                                  const Tensor& dout, const Tensor& x, const Tensor& w,
                                  const Tensor& mean, const Tensor& rstd) {
  const int64_t C = w.numel();
  DAPE_CHECK(C > 0, "layernorm_backward: empty weight");
  const int64_t rows = x.numel() / C;
  DAPE_CHECK(rows * C == x.numel(), "layernorm_backward: {} elements are not rows of {}", x.numel(),
             C);
  expect_numel(dx, x.numel(), "layernorm_backward: dx");
  expect_numel(dout, x.numel(), "layernorm_backward: dout");
  expect_numel(dw, C, "layernorm_backward: dw");
  expect_numel(db, C, "layernorm_backward: db");
  expect_numel(mean, rows, "layernorm_backward: mean");
  expect_numel(rstd, rows, "layernorm_backward: rstd");
  return {rows, C};
}

MatmulSizes check_matmul_forward(const Tensor& out, const Tensor& x, const Tensor& w,
                                 const Tensor& b) {
  DAPE_CHECK(w.shape.rank == 2 && w.shape[1] > 0,
             "matmul_forward: weight must be [N, K > 0], got {}", w.shape.str());
  const int64_t N = w.shape[0], K = w.shape[1], M = x.numel() / K;
  DAPE_CHECK(M * K == x.numel(), "matmul_forward: x {} is not rows of K={}", x.shape.str(), K);
  expect_numel(out, M * N, "matmul_forward: out");
  if (b.defined()) expect_numel(b, N, "matmul_forward: bias");
  return {M, N, K};
}

MatmulSizes check_matmul_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                                  const Tensor& dout, const Tensor& x, const Tensor& w) {
  DAPE_CHECK(w.shape.rank == 2 && w.shape[1] > 0,
             "matmul_backward: weight must be [N, K > 0], got {}", w.shape.str());
  const int64_t N = w.shape[0], K = w.shape[1], M = x.numel() / K;
  DAPE_CHECK(M * K == x.numel(), "matmul_backward: x {} is not rows of K={}", x.shape.str(), K);
  expect_numel(dout, M * N, "matmul_backward: dout");
  if (dx.defined()) expect_numel(dx, M * K, "matmul_backward: dx");
  expect_numel(dw, N * K, "matmul_backward: dw");
  if (db.defined()) expect_numel(db, N, "matmul_backward: db");
  return {M, N, K};
}

void check_gelu_forward(const Tensor& out, const Tensor& x) {
  expect_numel(out, x.numel(), "gelu_forward: out");
}

void check_gelu_backward(const Tensor& dx, const Tensor& x, const Tensor& dout) {
  expect_numel(dx, x.numel(), "gelu_backward: dx");
  expect_numel(dout, x.numel(), "gelu_backward: dout");
}

void check_rope(const AttentionShape& s, bool q_and_k_defined, int pos_offset, double base) {
  DAPE_CHECK(s.batch >= 0 && s.seq_len >= 0 && s.heads >= 1, "rope: bad shape B={} N={} H={}",
             s.batch, s.seq_len, s.heads);
  DAPE_CHECK(s.head_dim >= 2 && s.head_dim % 2 == 0,
             "rope: the head dimension must be even and at least 2, got {}", s.head_dim);
  DAPE_CHECK(s.qkv_row_stride >= int64_t{s.heads} * s.head_dim,
             "rope: row stride {} is shorter than a token's H*D = {}", s.qkv_row_stride,
             int64_t{s.heads} * s.head_dim);
  DAPE_CHECK(q_and_k_defined, "rope: q and k must both be defined");
  DAPE_CHECK(pos_offset >= 0, "rope: negative position offset {}", pos_offset);
  DAPE_CHECK(base > 0, "rope: base must be positive, got {}", base);
}

void check_attention_forward(const AttentionShape& s, const Tensor& out, const Tensor& lse) {
  expect_numel(out, int64_t{s.batch} * s.seq_len * s.local() * s.head_dim,
               "attention_forward: out");
  expect_numel(lse, int64_t{s.batch} * s.local() * s.seq_len, "attention_forward: lse");
}

void check_attention_backward(const AttentionShape& s, const Tensor& out, const Tensor& lse,
                              const Tensor& dout) {
  expect_numel(out, int64_t{s.batch} * s.seq_len * s.local() * s.head_dim,
               "attention_backward: out");
  expect_numel(dout, out.numel(), "attention_backward: dout");
  expect_numel(lse, int64_t{s.batch} * s.local() * s.seq_len, "attention_backward: lse");
}

RowsCols check_cross_entropy(const Tensor& losses, const Tensor& logits, const Tensor& targets,
                             int vocab) {
  expect_dtype(targets, DType::i32, "cross_entropy: targets");
  const int64_t rows = targets.numel(), padded = logits.numel() / std::max<int64_t>(rows, 1);
  DAPE_CHECK(padded * rows == logits.numel() && padded >= vocab,
             "cross_entropy: logits {} do not hold {} rows of at least {} columns",
             logits.shape.str(), rows, vocab);
  expect_numel(losses, rows, "cross_entropy: losses");
  return {rows, padded};
}

RowsCols check_cross_entropy_slice_stats(const Tensor& stats, const Tensor& logits,
                                         const Tensor& targets) {
  expect_dtype(targets, DType::i32, "cross_entropy_slice_stats: targets");
  const int64_t rows = targets.numel(), width = logits.numel() / std::max<int64_t>(rows, 1);
  DAPE_CHECK(width * rows == logits.numel(), "cross_entropy_slice_stats: logits {} for {} rows",
             logits.shape.str(), rows);
  expect_numel(stats, rows * 3, "cross_entropy_slice_stats: stats");
  return {rows, width};
}

SliceStatsSizes check_cross_entropy_from_slice_stats(const Tensor& losses, const Tensor& logits,
                                                     const Tensor& all_stats,
                                                     const Tensor& targets) {
  expect_dtype(targets, DType::i32, "cross_entropy_from_slice_stats: targets");
  const int64_t rows = targets.numel(), width = logits.numel() / std::max<int64_t>(rows, 1);
  DAPE_CHECK(width * rows == logits.numel(),
             "cross_entropy_from_slice_stats: logits {} for {} rows", logits.shape.str(), rows);
  const int64_t slices = all_stats.numel() / std::max<int64_t>(rows * 3, 1);
  DAPE_CHECK(slices >= 1 && slices * rows * 3 == all_stats.numel(),
             "cross_entropy_from_slice_stats: stats {} for {} rows", all_stats.shape.str(), rows);
  expect_numel(losses, rows, "cross_entropy_from_slice_stats: losses");
  return {rows, width, slices};
}

void check_adamw(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v) {
  const int64_t n = params.numel();
  expect_numel(grads, n, "adamw: grads");
  expect_numel(m, n, "adamw: m");
  expect_numel(v, n, "adamw: v");
}

}  // namespace dape
