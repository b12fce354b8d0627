/*
 * Host-side launchers of the CUDA backend's elementwise, normalization, loss and optimizer
 * kernels: plain functions on raw device pointers, callable from C++ code compiled without nvcc
 * (CudaOps in cuda_ops.cpp checks shapes and dtypes, then calls these). Each is defined in the
 * .cu file of its concept (embedding.cu, layernorm.cu, ...). Every launch is enqueued on
 * `stream` and returns without waiting; a launch error is reported by DAPE_CUDA_LAUNCHED
 * (cuda_check.h) as a dape::Error naming the kernel.
 *
 * All floating data is float32 (kernels/cuda_backend.h); token ids are int32. Semantics are
 * exactly those of the matching Ops function in kernels/ops.h (accumulate vs overwrite, aliasing,
 * padding), and every reduction runs in a fixed order: no floating-point atomics, so results
 * are bitwise reproducible on one device.
 */
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dape::cuda {

// ---- elementwise (elementwise.cu) -----------------------------------------------------------
void fill(float* x, int64_t n, float value, cudaStream_t stream);
void scale(float* x, int64_t n, float factor, cudaStream_t stream);
void add(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream);
void clamp_min(float* x, int64_t n, float lo, cudaStream_t stream);
// Converts between the model's float32 and other dtypes on the device (for copy_from_host of
// f64 data staged on the device, and for bf16 operand copies): n elements.
void f64_to_f32(float* dst, const double* src, int64_t n, cudaStream_t stream);
void f32_to_f64(double* dst, const float* src, int64_t n, cudaStream_t stream);

// ---- Σ x² in double, fixed order (sum_squares.cu) -------------------------------------------
// `workspace` holds sum_squares_workspace(n) doubles; the result lands in *result (device).
int64_t sum_squares_workspace(int64_t n);
void sum_squares(const float* x, int64_t n, double* workspace, double* result, cudaStream_t stream);

// ---- embedding (embedding.cu) ----------------------------------------------------------------
// out[r, :] = wte[tokens[r] - vocab_begin, :] (+ wpe[pos_offset + r % seq_len, :] when wpe is not
// null). vocab_begin < 0: the whole table, and an id outside [0, wte_rows) writes that id to
// *bad_token (device int32, left untouched otherwise; the caller checks it) and a zero row. With
// vocab_begin >= 0, ids outside the slice give a zero row (plus wpe) and are not errors.
void embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t wte_rows,
                       const float* wpe, int64_t rows, int64_t C, int seq_len, int pos_offset,
                       int64_t vocab_begin, int32_t* bad_token, cudaStream_t stream);
// dwte += scatter of dout by token (ids outside the table or slice add nothing), dwpe (when not
// null) += the sum over the batch of dout by position. Deterministic: each output row is summed
// in increasing r. `workspace` holds embedding_backward_workspace(rows) bytes.
int64_t embedding_backward_workspace(int64_t rows);
void embedding_backward(float* dwte, int64_t wte_rows, float* dwpe, const float* dout,
                        const int32_t* tokens, int64_t rows, int64_t C, int seq_len, int pos_offset,
                        int64_t vocab_begin, void* workspace, cudaStream_t stream);

// ---- layer norm, eps 1e-5 (layernorm.cu) -----------------------------------------------------
void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t rows, int64_t C, cudaStream_t stream);
// dx += ..., dw += ..., db += ... ; dw/db reduced over rows from per-block partials in a fixed
// order; `workspace` holds layernorm_backward_workspace(rows, C) floats.
int64_t layernorm_backward_workspace(int64_t rows, int64_t C);
void layernorm_backward(float* dx, float* dw, float* db, const float* dout, const float* x,
                        const float* w, const float* mean, const float* rstd, int64_t rows,
                        int64_t C, float* workspace, cudaStream_t stream);

// ---- GELU, exact erf (gelu.cu) ---------------------------------------------------------------
void gelu_forward(float* out, const float* x, int64_t n, cudaStream_t stream);
// dx may alias dout.
void gelu_backward(float* dx, const float* x, const float* dout, int64_t n, cudaStream_t stream);
// Σ over rows of dout [rows, cols] added to db [cols] (db += ...), fixed order; the bias
// gradient of a linear layer where no cuBLASLt epilogue gives it. `workspace` holds
// column_sum_workspace(rows, cols) floats.
int64_t column_sum_workspace(int64_t rows, int64_t cols);
void column_sum_accumulate(float* db, const float* dout, int64_t rows, int64_t cols,
                           float* workspace, cudaStream_t stream);

// ---- rotary embedding, NeoX rotate_half over the full head dim (rope.cu) ----------------------
// Rotates q and k in place (inverse = true applies the transpose, for the gradients). Token t of
// sequence b is at position pos_offset + t; rows of q are q_row_stride apart, of k k_row_stride.
void rope(float* q, int64_t q_row_stride, float* k, int64_t k_row_stride, int batch, int seq_len,
          int heads, int head_dim, int pos_offset, double base, bool inverse, cudaStream_t stream);

// ---- fused softmax cross-entropy (cross_entropy.cu) -------------------------------------------
// Semantics of Ops::cross_entropy; logits [rows, padded] overwritten by their gradient when
// grad_scale != 0. A target outside [0, vocab) writes it to *bad_target (device int32).
void cross_entropy(float* losses, float* logits, const int32_t* targets, int64_t rows,
                   int64_t padded, int vocab, float grad_scale, int32_t* bad_target,
                   cudaStream_t stream);
void cross_entropy_slice_stats(float* stats, const float* logits, const int32_t* targets,
                               int64_t rows, int64_t cols, int64_t vocab_begin, int vocab,
                               cudaStream_t stream);
void cross_entropy_from_slice_stats(float* losses, float* logits, const float* all_stats,
                                    int64_t slices, const int32_t* targets, int64_t rows,
                                    int64_t cols, int64_t vocab_begin, int vocab, float grad_scale,
                                    cudaStream_t stream);

// ---- AdamW, PyTorch semantics (adamw.cu) ------------------------------------------------------
void adamw(float* params, const float* grads, float* m, float* v, int64_t n, double lr,
           double beta1, double beta2, double eps, double weight_decay, int64_t step,
           cudaStream_t stream);

}  // namespace dape::cuda
