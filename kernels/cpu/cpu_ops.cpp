#include "kernels/cpu/cpu_ops.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cpu/adamw.h"
#include "kernels/cpu/attention_fused.h"
#include "kernels/cpu/attention_reference.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/rope.h"
#include "kernels/ops_checks.h"

namespace dape {
namespace {

// Calls fn with a null pointer of the backend's float type, so `decltype` picks the template.
template <class F>
auto dispatch(DType t, F&& fn) {
  if (t == DType::f32) return fn(static_cast<float*>(nullptr));
  DAPE_CHECK(t == DType::f64, "CpuOps computes in float32 or float64, not {}", dtype_name(t));
  return fn(static_cast<double*>(nullptr));
}

template <class T>
T* opt(const Tensor& t) {
  return t.defined() ? t.ptr<T>() : nullptr;
}

}  // namespace

CpuOps::CpuOps(DType float_dtype, int threads) : dtype_(float_dtype) {
  DAPE_CHECK(float_dtype == DType::f32 || float_dtype == DType::f64,
             "CpuOps computes in float32 or float64, not {}", dtype_name(float_dtype));
  if (threads > 0) omp_set_num_threads(threads);
}

void* CpuOps::allocate(int64_t bytes) {
  size_t rounded = (static_cast<size_t>(bytes) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) fail("out of memory: could not allocate {} bytes on the CPU", bytes);
  return p;
}

void CpuOps::deallocate(void* p) {
  std::free(p);
}

void CpuOps::copy_from_host(const Tensor& dst, const void* src, DType host_dtype) {
  convert_values(dst.data, dst.dtype, src, host_dtype, dst.numel());
}

void CpuOps::copy_to_host(void* dst, DType host_dtype, const Tensor& src) {
  convert_values(dst, host_dtype, src.data, src.dtype, src.numel());
}

void CpuOps::copy(const Tensor& dst, const Tensor& src) {
  check_copy(dst, src);
  if (dst.data != src.data) std::memcpy(dst.data, src.data, src.nbytes());
}

void CpuOps::copy_2d(const Tensor& dst, int64_t dst_stride, const Tensor& src, int64_t src_stride,
                     int64_t rows, int64_t cols) {
  check_copy_2d(dst, dst_stride, src, src_stride, rows, cols);
  const int64_t es = dtype_size(src.dtype);
  auto* d = static_cast<char*>(dst.data);
  const auto* s = static_cast<const char*>(src.data);
#pragma omp parallel for schedule(static) if (rows * cols >= (int64_t{1} << 16))
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(d + r * dst_stride * es, s + r * src_stride * es, static_cast<size_t>(cols * es));
}

void CpuOps::fill(const Tensor& x, double value) {
  if (x.dtype == DType::i32) {
    auto* p = x.ptr<int32_t>();
    for (int64_t i = 0; i < x.numel(); ++i) p[i] = static_cast<int32_t>(value);
    return;
  }
  dispatch(x.dtype, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::fill(x.ptr<T>(), x.numel(), static_cast<T>(value));
  });
}

void CpuOps::scale(const Tensor& x, double factor) {
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::scale(x.ptr<T>(), x.numel(), static_cast<T>(factor));
  });
}

void CpuOps::add(const Tensor& out, const Tensor& a, const Tensor& b) {
  check_add(out, a, b);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::add(out.ptr<T>(), a.ptr<T>(), b.ptr<T>(), out.numel());
  });
}

void CpuOps::clamp_min(const Tensor& x, double lo) {
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::clamp_min(x.ptr<T>(), x.numel(), static_cast<T>(lo));
  });
}

double CpuOps::sum_squares(const Tensor& x) {
  return dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    return cpu::sum_squares(x.ptr<T>(), x.numel());
  });
}

void CpuOps::embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& wte,
                               const Tensor& wpe, int seq_len, int pos_offset,
                               int64_t vocab_begin) {
  const auto [rows, C] = check_embedding_forward(out, tokens, wte, wpe);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::embedding_forward(out.ptr<T>(), tokens.ptr<int32_t>(), wte.ptr<T>(), opt<T>(wpe), rows, C,
                           wte.shape[0], vocab_begin, wpe.defined() ? wpe.shape[0] : 0, seq_len,
                           pos_offset);
  });
}

void CpuOps::embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                                const Tensor& tokens, int seq_len, int pos_offset,
                                int64_t vocab_begin) {
  const auto [rows, C] = check_embedding_backward(dwte, dwpe, dout, tokens);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::embedding_backward(dwte.ptr<T>(), opt<T>(dwpe), dout.ptr<T>(), tokens.ptr<int32_t>(), rows,
                            C, dwte.shape[0], vocab_begin, dwpe.defined() ? dwpe.shape[0] : 0,
                            seq_len, pos_offset);
  });
}

void CpuOps::layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                               const Tensor& x, const Tensor& w, const Tensor& b) {
  const auto [rows, C] = check_layernorm_forward(out, mean, rstd, x, w, b);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::layernorm_forward(out.ptr<T>(), mean.ptr<T>(), rstd.ptr<T>(), x.ptr<T>(), w.ptr<T>(),
                           b.ptr<T>(), rows, C);
  });
}

void CpuOps::layernorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                                const Tensor& dout, const Tensor& x, const Tensor& w,
                                const Tensor& mean, const Tensor& rstd) {
  const auto [rows, C] = check_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::layernorm_backward(dx.ptr<T>(), dw.ptr<T>(), db.ptr<T>(), dout.ptr<T>(), x.ptr<T>(),
                            w.ptr<T>(), mean.ptr<T>(), rstd.ptr<T>(), rows, C);
  });
}

void CpuOps::matmul_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b) {
  const auto [M, N, K] = check_matmul_forward(out, x, w, b);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::linear_forward(out.ptr<T>(), x.ptr<T>(), w.ptr<T>(), opt<T>(b), M, N, K);
  });
}

void CpuOps::matmul_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                             const Tensor& dout, const Tensor& x, const Tensor& w,
                             bool accumulate_dx) {
  const auto [M, N, K] = check_matmul_backward(dx, dw, db, dout, x, w);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::linear_backward(opt<T>(dx), dw.ptr<T>(), opt<T>(db), dout.ptr<T>(), x.ptr<T>(), w.ptr<T>(),
                         M, N, K, accumulate_dx);
  });
}

void CpuOps::gelu_forward(const Tensor& out, const Tensor& x) {
  check_gelu_forward(out, x);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::gelu_forward(out.ptr<T>(), x.ptr<T>(), x.numel());
  });
}

void CpuOps::gelu_backward(const Tensor& dx, const Tensor& x, const Tensor& dout) {
  check_gelu_backward(dx, x, dout);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::gelu_backward(dx.ptr<T>(), x.ptr<T>(), dout.ptr<T>(), x.numel());
  });
}

void CpuOps::rope_forward(const Tensor& q, const Tensor& k, const AttentionShape& shape,
                          int pos_offset, double base) {
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::rope_forward(q.ptr<T>(), k.ptr<T>(), shape, pos_offset, base);
  });
}

void CpuOps::rope_backward(const Tensor& dq, const Tensor& dk, const AttentionShape& shape,
                           int pos_offset, double base) {
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::rope_backward(dq.ptr<T>(), dk.ptr<T>(), shape, pos_offset, base);
  });
}

void CpuOps::attention_forward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                               AttentionImpl impl) {
  check_attention_forward(in.shape, out, lse);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    if (impl == AttentionImpl::fused)
      cpu::attention_fused_forward<T>(in, out.ptr<T>(), lse.ptr<T>());
    else
      cpu::attention_reference_forward<T>(in, out.ptr<T>(), lse.ptr<T>());
  });
}

void CpuOps::attention_backward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                                const Tensor& dout, const AttentionGrads& grads,
                                AttentionImpl impl) {
  check_attention_backward(in.shape, out, lse, dout);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    if (impl == AttentionImpl::fused)
      cpu::attention_fused_backward<T>(in, out.ptr<T>(), lse.ptr<T>(), dout.ptr<T>(), grads);
    else
      cpu::attention_reference_backward<T>(in, out.ptr<T>(), lse.ptr<T>(), dout.ptr<T>(), grads);
  });
}

void CpuOps::cross_entropy(const Tensor& losses, const Tensor& logits, const Tensor& targets,
                           int vocab, double grad_scale) {
  const auto [rows, padded] = check_cross_entropy(losses, logits, targets, vocab);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::cross_entropy(losses.ptr<T>(), logits.ptr<T>(), targets.ptr<int32_t>(), rows, vocab,
                       padded, grad_scale);
  });
}

void CpuOps::cross_entropy_slice_stats(const Tensor& stats, const Tensor& logits,
                                       const Tensor& targets, int64_t vocab_begin, int vocab) {
  const auto [rows, width] = check_cross_entropy_slice_stats(stats, logits, targets);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::cross_entropy_slice_stats(stats.ptr<T>(), logits.ptr<T>(), targets.ptr<int32_t>(), rows,
                                   width, vocab_begin, vocab);
  });
}

void CpuOps::cross_entropy_from_slice_stats(const Tensor& losses, const Tensor& logits,
                                            const Tensor& all_stats, const Tensor& targets,
                                            int64_t vocab_begin, int vocab, double grad_scale) {
  const auto [rows, width, slices] =
      check_cross_entropy_from_slice_stats(losses, logits, all_stats, targets);
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::cross_entropy_from_slice_stats(losses.ptr<T>(), logits.ptr<T>(), all_stats.ptr<T>(),
                                        slices, targets.ptr<int32_t>(), rows, width, vocab_begin,
                                        vocab, grad_scale);
  });
}

void CpuOps::adamw(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v,
                   const AdamWHyper& h) {
  check_adamw(params, grads, m, v);
  const int64_t n = params.numel();
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::adamw(params.ptr<T>(), grads.ptr<T>(), m.ptr<T>(), v.ptr<T>(), n, h);
  });
}

}  // namespace dape
