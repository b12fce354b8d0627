/*
 * ProfilingOps: an Ops that forwards every call to another Ops and records how long each kind of
 * operation took (after synchronizing the device), so a training step can be broken down by op
 * without touching the model. Used by `bench/train_step --profile`; costs one clock read and one
 * synchronize per call, so keep it out of measured runs.
 */
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "kernels/ops.h"

namespace dape {

class ProfilingOps final : public Ops {
 public:
  explicit ProfilingOps(Ops& inner) : inner_(inner) {}

  struct Entry {
    int64_t calls = 0;
    double seconds = 0;
  };
  const std::map<std::string, Entry>& entries() const { return entries_; }
  void reset() { entries_.clear(); }
  // A table: op, calls, total ms, share, sorted by time.
  std::string report() const;

  std::string name() const override { return inner_.name() + "+profiling"; }
  DType float_dtype() const override { return inner_.float_dtype(); }
  void synchronize() override { inner_.synchronize(); }
  void* allocate(int64_t bytes) override { return inner_.allocate(bytes); }
  void deallocate(void* p) override { inner_.deallocate(p); }
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
  bool has_attention(AttentionImpl impl) const override { return inner_.has_attention(impl); }
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
  // Runs fn on the inner backend, synchronizes, and charges the time to `op`.
  template <class F>
  auto timed(const char* op, F&& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    struct Charge {
      ProfilingOps* self;
      const char* op;
      std::chrono::steady_clock::time_point t0;
      ~Charge() {
        self->inner_.synchronize();
        auto& e = self->entries_[op];
        e.calls += 1;
        e.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
    } charge{this, op, t0};
    return fn();
  }

  Ops& inner_;
  std::map<std::string, Entry> entries_;
};

}  // namespace dape
