/*
 * CpuOps: the Ops interface on the CPU.
 *
 * A thin dispatcher: it checks shapes and dtypes at the boundary, then calls the templated
 * kernels in this directory with float or double, whichever the backend was created for.
 * Memory is host memory aligned to 64 bytes. Threads are OpenMP's; set_num_threads fixes
 * how many, which (with the fixed-order reductions in every kernel) fixes the results bit for bit.
 */
#pragma once

#include "kernels/ops.h"

namespace dape {

class CpuOps final : public Ops {
 public:
  // float_dtype is f32 (training) or f64 (gradient checks). threads <= 0 keeps OpenMP's default.
  explicit CpuOps(DType float_dtype = DType::f32, int threads = 0);

  std::string name() const override { return "cpu"; }
  DType float_dtype() const override { return dtype_; }

  void* allocate(int64_t bytes) override;
  void deallocate(void* p) override;
  void copy_from_host(const Tensor& dst, const void* src, DType host_dtype) override;
  void copy_to_host(void* dst, DType host_dtype, const Tensor& src) override;
  void copy(const Tensor& dst, const Tensor& src) override;
  void copy_2d(const Tensor& dst, int64_t dst_stride, const Tensor& src, int64_t src_stride,
               int64_t rows, int64_t cols) override;

  void fill(const Tensor& x, double value) override;
  void scale(const Tensor& x, double factor) override;
  void add(const Tensor& out, const Tensor& a, const Tensor& b) override;
  void clamp_min(const Tensor& x, double lo) override;
  double sum_squares(const Tensor& x) override;

  void embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& wte,
                         const Tensor& wpe, int seq_len, int pos_offset,
                         int64_t vocab_begin = -1) override;
  void embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                          const Tensor& tokens, int seq_len, int pos_offset,
                          int64_t vocab_begin = -1) override;

  void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                         const Tensor& w, const Tensor& b) override;
  void layernorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& db, const Tensor& dout,
                          const Tensor& x, const Tensor& w, const Tensor& mean,
                          const Tensor& rstd) override;

  void matmul_forward(const Tensor& out, const Tensor& x, const Tensor& w,
                      const Tensor& b) override;
  void matmul_backward(const Tensor& dx, const Tensor& dw, const Tensor& db, const Tensor& dout,
                       const Tensor& x, const Tensor& w, bool accumulate_dx) override;

  void gelu_forward(const Tensor& out, const Tensor& x) override;
  void gelu_backward(const Tensor& dx, const Tensor& x, const Tensor& dout) override;

  void rope_forward(const Tensor& q, const Tensor& k, const AttentionShape& shape, int pos_offset,
                    double base) override;
  void rope_backward(const Tensor& dq, const Tensor& dk, const AttentionShape& shape,
                     int pos_offset, double base) override;

  bool has_attention(AttentionImpl) const override { return true; }
  void attention_forward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                         AttentionImpl impl) override;
  void attention_backward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                          const Tensor& dout, const AttentionGrads& grads,
                          AttentionImpl impl) override;

  void cross_entropy(const Tensor& losses, const Tensor& logits, const Tensor& targets, int vocab,
                     double grad_scale) override;
  void cross_entropy_slice_stats(const Tensor& stats, const Tensor& logits, const Tensor& targets,
                                 int64_t vocab_begin, int vocab) override;
  void cross_entropy_from_slice_stats(const Tensor& losses, const Tensor& logits,
                                      const Tensor& all_stats, const Tensor& targets,
                                      int64_t vocab_begin, int vocab, double grad_scale) override;

  void adamw(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v,
             const AdamWHyper& h) override;

 private:
  DType dtype_;
};

}  // namespace dape
