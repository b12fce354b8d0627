/*
 * Argument checks of the Ops interface, shared by every backend.
 *
 * Each check_<op> validates the shapes and element counts one Ops function receives, with the
 * same message on every backend, and returns the sizes its kernel needs. A backend calls it
 * first, then checks what only it requires (CpuOps dispatches on f32 or f64, CudaOps takes f32
 * and has limits of its own), then launches. A broken invariant is a bug in the caller: these
 * checks throw InternalError through DAPE_CHECK.
 */
#pragma once

#include <cstdint>

#include "kernels/attention.h"
#include "kernels/tensor.h"

namespace dape {

// `what` names the op and the argument, as in "add: a".
void expect_dtype(const Tensor& t, DType d, const char* what);
void expect_numel(const Tensor& t, int64_t n, const char* what);

struct RowsCols {
  int64_t rows, cols;
};

// out [M, N] = x [M, K] · w [N, K]^T (+ b [N]).
struct MatmulSizes {
  int64_t M, N, K;
};

// Logits of `rows` rows of `width` columns, and the number of vocabulary slices in the stats.
struct SliceStatsSizes {
  int64_t rows, width, slices;
};

void check_copy(const Tensor& dst, const Tensor& src);
void check_copy_2d(const Tensor& dst, int64_t dst_stride, const Tensor& src, int64_t src_stride,
                   int64_t rows, int64_t cols);
void check_add(const Tensor& out, const Tensor& a, const Tensor& b);

// Rows = tokens, cols = channels C of the table.
RowsCols check_embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& wte,
                                 const Tensor& wpe);
RowsCols check_embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                                  const Tensor& tokens);
// Positions pos_offset + r % seq_len for r < rows must lie in [0, positions) (the rows of wpe).
void check_positions(int64_t rows, int64_t positions, int seq_len, int pos_offset,
                     const char* what);

// Rows of C = w.numel() channels.
RowsCols check_layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                                 const Tensor& x, const Tensor& w, const Tensor& b);
RowsCols check_layernorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                                  const Tensor& dout, const Tensor& x, const Tensor& w,
                                  const Tensor& mean, const Tensor& rstd);

MatmulSizes check_matmul_forward(const Tensor& out, const Tensor& x, const Tensor& w,
                                 const Tensor& b);
MatmulSizes check_matmul_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                                  const Tensor& dout, const Tensor& x, const Tensor& w);

void check_gelu_forward(const Tensor& out, const Tensor& x);
void check_gelu_backward(const Tensor& dx, const Tensor& x, const Tensor& dout);

// q and k (or dq and dk) both defined, a shape the rotation can walk, pos_offset >= 0, base > 0.
void check_rope(const AttentionShape& s, bool q_and_k_defined, int pos_offset, double base);

void check_attention_forward(const AttentionShape& s, const Tensor& out, const Tensor& lse);
void check_attention_backward(const AttentionShape& s, const Tensor& out, const Tensor& lse,
                              const Tensor& dout);

// Rows = targets, cols = the padded width of a logits row (at least vocab).
RowsCols check_cross_entropy(const Tensor& losses, const Tensor& logits, const Tensor& targets,
                             int vocab);
// Rows = targets, cols = the width of this rank's slice of the logits.
RowsCols check_cross_entropy_slice_stats(const Tensor& stats, const Tensor& logits,
                                         const Tensor& targets);
SliceStatsSizes check_cross_entropy_from_slice_stats(const Tensor& losses, const Tensor& logits,
                                                     const Tensor& all_stats,
                                                     const Tensor& targets);

void check_adamw(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v);

}  // namespace dape
