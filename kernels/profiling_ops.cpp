#include "kernels/profiling_ops.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace dape {

std::string ProfilingOps::report() const {
  std::vector<std::pair<std::string, Entry>> rows(entries_.begin(), entries_.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  double total = 0;
  for (const auto& r : rows) total += r.second.seconds;
  std::string out = fmt::format("{:<22} {:>7} {:>10} {:>7}\n", "op", "calls", "total ms", "share");
  for (const auto& [op, e] : rows)
    out += fmt::format("{:<22} {:>7} {:>10.2f} {:>6.1f}%\n", op, e.calls, 1e3 * e.seconds,
                       total > 0 ? 100 * e.seconds / total : 0.0);
  out += fmt::format("{:<22} {:>7} {:>10.2f}\n", "total", "", 1e3 * total);
  return out;
}

void ProfilingOps::copy_from_host(const Tensor& dst, const void* src, DType host_dtype) {
  timed("copy_from_host", [&] { inner_.copy_from_host(dst, src, host_dtype); });
}
void ProfilingOps::copy_to_host(void* dst, DType host_dtype, const Tensor& src) {
  timed("copy_to_host", [&] { inner_.copy_to_host(dst, host_dtype, src); });
}
void ProfilingOps::copy(const Tensor& dst, const Tensor& src) {
  timed("copy", [&] { inner_.copy(dst, src); });
}
void ProfilingOps::fill(const Tensor& x, double value) {
  timed("fill", [&] { inner_.fill(x, value); });
}
void ProfilingOps::scale(const Tensor& x, double factor) {
  timed("scale", [&] { inner_.scale(x, factor); });
}
void ProfilingOps::add(const Tensor& out, const Tensor& a, const Tensor& b) {
  timed("add", [&] { inner_.add(out, a, b); });
}
void ProfilingOps::clamp_min(const Tensor& x, double lo) {
  timed("clamp_min", [&] { inner_.clamp_min(x, lo); });
}
double ProfilingOps::sum_squares(const Tensor& x) {
  return timed("sum_squares", [&] { return inner_.sum_squares(x); });
}
void ProfilingOps::copy_2d(const Tensor& dst, int64_t dst_stride, const Tensor& src,
                           int64_t src_stride, int64_t rows, int64_t cols) {
  timed("copy_2d", [&] { inner_.copy_2d(dst, dst_stride, src, src_stride, rows, cols); });
}
void ProfilingOps::embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& wte,
                                     const Tensor& wpe, int seq_len, int pos_offset,
                                     int64_t vocab_begin) {
  timed("embedding_forward",
        [&] { inner_.embedding_forward(out, tokens, wte, wpe, seq_len, pos_offset, vocab_begin); });
}
void ProfilingOps::embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                                      const Tensor& tokens, int seq_len, int pos_offset,
                                      int64_t vocab_begin) {
  timed("embedding_backward", [&] {
    inner_.embedding_backward(dwte, dwpe, dout, tokens, seq_len, pos_offset, vocab_begin);
  });
}
void ProfilingOps::layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                                     const Tensor& x, const Tensor& w, const Tensor& b) {
  timed("layernorm_forward", [&] { inner_.layernorm_forward(out, mean, rstd, x, w, b); });
}
void ProfilingOps::layernorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                                      const Tensor& dout, const Tensor& x, const Tensor& w,
                                      const Tensor& mean, const Tensor& rstd) {
  timed("layernorm_backward",
        [&] { inner_.layernorm_backward(dx, dw, db, dout, x, w, mean, rstd); });
}
void ProfilingOps::matmul_forward(const Tensor& out, const Tensor& x, const Tensor& w,
                                  const Tensor& b) {
  timed("matmul_forward", [&] { inner_.matmul_forward(out, x, w, b); });
}
void ProfilingOps::matmul_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                                   const Tensor& dout, const Tensor& x, const Tensor& w,
                                   bool accumulate_dx) {
  timed("matmul_backward", [&] { inner_.matmul_backward(dx, dw, db, dout, x, w, accumulate_dx); });
}
void ProfilingOps::gelu_forward(const Tensor& out, const Tensor& x) {
  timed("gelu_forward", [&] { inner_.gelu_forward(out, x); });
}
void ProfilingOps::gelu_backward(const Tensor& dx, const Tensor& x, const Tensor& dout) {
  timed("gelu_backward", [&] { inner_.gelu_backward(dx, x, dout); });
}
void ProfilingOps::rope_forward(const Tensor& q, const Tensor& k, const AttentionShape& shape,
                                int pos_offset, double base) {
  timed("rope_forward", [&] { inner_.rope_forward(q, k, shape, pos_offset, base); });
}
void ProfilingOps::rope_backward(const Tensor& dq, const Tensor& dk, const AttentionShape& shape,
                                 int pos_offset, double base) {
  timed("rope_backward", [&] { inner_.rope_backward(dq, dk, shape, pos_offset, base); });
}
void ProfilingOps::attention_forward(const AttentionInputs& in, const Tensor& out,
                                     const Tensor& lse, AttentionImpl impl) {
  timed("attention_forward", [&] { inner_.attention_forward(in, out, lse, impl); });
}
void ProfilingOps::attention_backward(const AttentionInputs& in, const Tensor& out,
                                      const Tensor& lse, const Tensor& dout,
                                      const AttentionGrads& grads, AttentionImpl impl) {
  timed("attention_backward", [&] { inner_.attention_backward(in, out, lse, dout, grads, impl); });
}
void ProfilingOps::cross_entropy(const Tensor& losses, const Tensor& logits, const Tensor& targets,
                                 int vocab, double grad_scale) {
  timed("cross_entropy", [&] { inner_.cross_entropy(losses, logits, targets, vocab, grad_scale); });
}
void ProfilingOps::cross_entropy_slice_stats(const Tensor& stats, const Tensor& logits,
                                             const Tensor& targets, int64_t vocab_begin,
                                             int vocab) {
  timed("cross_entropy",
        [&] { inner_.cross_entropy_slice_stats(stats, logits, targets, vocab_begin, vocab); });
}
void ProfilingOps::cross_entropy_from_slice_stats(const Tensor& losses, const Tensor& logits,
                                                  const Tensor& all_stats, const Tensor& targets,
                                                  int64_t vocab_begin, int vocab,
                                                  double grad_scale) {
  timed("cross_entropy", [&] {
    inner_.cross_entropy_from_slice_stats(losses, logits, all_stats, targets, vocab_begin, vocab,
                                          grad_scale);
  });
}
void ProfilingOps::adamw(const Tensor& params, const Tensor& grads, const Tensor& m,
                         const Tensor& v, const AdamWHyper& h) {
  timed("adamw", [&] { inner_.adamw(params, grads, m, v, h); });
}

}  // namespace dape
