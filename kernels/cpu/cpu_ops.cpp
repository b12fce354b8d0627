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

namespace dape {
namespace {

// Calls fn with a null pointer of the backend's float type, so `decltype` picks the template.
template <class F>
auto dispatch(DType t, F&& fn) {
  if (t == DType::f32) return fn(static_cast<float*>(nullptr));
  DAPE_CHECK(t == DType::f64, "CpuOps computes in float32 or float64, not {}", dtype_name(t));
  return fn(static_cast<double*>(nullptr));
}

void expect(const Tensor& t, DType d, const char* what) {
  DAPE_CHECK(t.defined(), "{}: tensor is undefined", what);
  DAPE_CHECK(t.dtype == d, "{}: expected {}, got {}", what, dtype_name(d), dtype_name(t.dtype));
}

void expect_numel(const Tensor& t, int64_t n, const char* what) {
  DAPE_CHECK(t.numel() == n, "{}: expected {} elements, got {} ({})", what, n, t.numel(),
             t.shape.str());
}

template <class T>
T* opt(const Tensor& t) {
  return t.defined() ? t.ptr<T>() : nullptr;
}

template <class Src, class Dst>
void convert(Dst* dst, const Src* src, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(src[i]);
}

// Copies n values between two typed buffers, converting between f32, f64 and i32.
void convert_any(void* dst, DType dt, const void* src, DType st, int64_t n) {
  if (n == 0) return;
  if (dt == st) {
    std::memcpy(dst, src, n * dtype_size(dt));
    return;
  }
  auto from = [&](auto* d) {
    using D = std::remove_pointer_t<decltype(d)>;
    switch (st) {
      case DType::f32:
        convert(d, static_cast<const float*>(src), n);
        return;
      case DType::f64:
        convert(d, static_cast<const double*>(src), n);
        return;
      case DType::i32:
        convert(d, static_cast<const int32_t*>(src), n);
        return;
      default:
        DAPE_CHECK(false, "no conversion from {}", dtype_name(st));
    }
    (void)sizeof(D);
  };
  switch (dt) {
    case DType::f32:
      from(static_cast<float*>(dst));
      return;
    case DType::f64:
      from(static_cast<double*>(dst));
      return;
    case DType::i32:
      from(static_cast<int32_t*>(dst));
      return;
    default:
      DAPE_CHECK(false, "no conversion to {}", dtype_name(dt));
  }
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
  convert_any(dst.data, dst.dtype, src, host_dtype, dst.numel());
}

void CpuOps::copy_to_host(void* dst, DType host_dtype, const Tensor& src) {
  convert_any(dst, host_dtype, src.data, src.dtype, src.numel());
}

void CpuOps::copy(const Tensor& dst, const Tensor& src) {
  DAPE_CHECK(dst.dtype == src.dtype && dst.numel() == src.numel(), "copy {} {} into {} {}",
             dtype_name(src.dtype), src.shape.str(), dtype_name(dst.dtype), dst.shape.str());
  if (dst.data != src.data) std::memcpy(dst.data, src.data, src.nbytes());
}

void CpuOps::copy_2d(const Tensor& dst, int64_t dst_stride, const Tensor& src, int64_t src_stride,
                     int64_t rows, int64_t cols) {
  DAPE_CHECK(dst.dtype == src.dtype, "copy_2d of {} into {}", dtype_name(src.dtype),
             dtype_name(dst.dtype));
  DAPE_CHECK(rows >= 0 && cols >= 0 && cols <= dst_stride && cols <= src_stride,
             "copy_2d of {} × {} with strides {} and {}", rows, cols, dst_stride, src_stride);
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
  expect_numel(a, out.numel(), "add: a");
  expect_numel(b, out.numel(), "add: b");
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
  expect(tokens, DType::i32, "embedding_forward: tokens");
  DAPE_CHECK(wte.shape.rank == 2, "embedding_forward: wte must be [V, C], got {}", wte.shape.str());
  const int64_t rows = tokens.numel(), C = wte.shape[1];
  expect_numel(out, rows * C, "embedding_forward: out");
  if (wpe.defined()) {
    DAPE_CHECK(wpe.shape.rank == 2 && wpe.shape[1] == C,
               "embedding_forward: wpe must be [P, {}], got {}", C, wpe.shape.str());
  }
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
  expect(tokens, DType::i32, "embedding_backward: tokens");
  DAPE_CHECK(dwte.shape.rank == 2, "embedding_backward: dwte must be [V, C], got {}",
             dwte.shape.str());
  const int64_t rows = tokens.numel(), C = dwte.shape[1];
  expect_numel(dout, rows * C, "embedding_backward: dout");
  if (dwpe.defined()) {
    DAPE_CHECK(dwpe.shape.rank == 2 && dwpe.shape[1] == C,
               "embedding_backward: dwpe must be [P, {}], got {}", C, dwpe.shape.str());
  }
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::embedding_backward(dwte.ptr<T>(), opt<T>(dwpe), dout.ptr<T>(), tokens.ptr<int32_t>(), rows,
                            C, dwte.shape[0], vocab_begin, dwpe.defined() ? dwpe.shape[0] : 0,
                            seq_len, pos_offset);
  });
}

void CpuOps::layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
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
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::layernorm_forward(out.ptr<T>(), mean.ptr<T>(), rstd.ptr<T>(), x.ptr<T>(), w.ptr<T>(),
                           b.ptr<T>(), rows, C);
  });
}

void CpuOps::layernorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
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
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::layernorm_backward(dx.ptr<T>(), dw.ptr<T>(), db.ptr<T>(), dout.ptr<T>(), x.ptr<T>(),
                            w.ptr<T>(), mean.ptr<T>(), rstd.ptr<T>(), rows, C);
  });
}

void CpuOps::matmul_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b) {
  DAPE_CHECK(w.shape.rank == 2 && w.shape[1] > 0,
             "matmul_forward: weight must be [N, K > 0], got {}", w.shape.str());
  const int64_t N = w.shape[0], K = w.shape[1], M = x.numel() / K;
  DAPE_CHECK(M * K == x.numel(), "matmul_forward: x {} is not rows of K={}", x.shape.str(), K);
  expect_numel(out, M * N, "matmul_forward: out");
  if (b.defined()) expect_numel(b, N, "matmul_forward: bias");
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::linear_forward(out.ptr<T>(), x.ptr<T>(), w.ptr<T>(), opt<T>(b), M, N, K);
  });
}

void CpuOps::matmul_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                             const Tensor& dout, const Tensor& x, const Tensor& w,
                             bool accumulate_dx) {
  DAPE_CHECK(w.shape.rank == 2 && w.shape[1] > 0,
             "matmul_backward: weight must be [N, K > 0], got {}", w.shape.str());
  const int64_t N = w.shape[0], K = w.shape[1], M = x.numel() / K;
  DAPE_CHECK(M * K == x.numel(), "matmul_backward: x {} is not rows of K={}", x.shape.str(), K);
  expect_numel(dout, M * N, "matmul_backward: dout");
  if (dx.defined()) expect_numel(dx, M * K, "matmul_backward: dx");
  expect_numel(dw, N * K, "matmul_backward: dw");
  if (db.defined()) expect_numel(db, N, "matmul_backward: db");
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::linear_backward(opt<T>(dx), dw.ptr<T>(), opt<T>(db), dout.ptr<T>(), x.ptr<T>(), w.ptr<T>(),
                         M, N, K, accumulate_dx);
  });
}

void CpuOps::gelu_forward(const Tensor& out, const Tensor& x) {
  expect_numel(out, x.numel(), "gelu_forward: out");
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::gelu_forward(out.ptr<T>(), x.ptr<T>(), x.numel());
  });
}

void CpuOps::gelu_backward(const Tensor& dx, const Tensor& x, const Tensor& dout) {
  expect_numel(dx, x.numel(), "gelu_backward: dx");
  expect_numel(dout, x.numel(), "gelu_backward: dout");
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
  const auto& s = in.shape;
  expect_numel(out, int64_t{s.batch} * s.seq_len * s.local() * s.head_dim,
               "attention_forward: out");
  expect_numel(lse, int64_t{s.batch} * s.local() * s.seq_len, "attention_forward: lse");
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
  const auto& s = in.shape;
  expect_numel(out, int64_t{s.batch} * s.seq_len * s.local() * s.head_dim,
               "attention_backward: out");
  expect_numel(dout, out.numel(), "attention_backward: dout");
  expect_numel(lse, int64_t{s.batch} * s.local() * s.seq_len, "attention_backward: lse");
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
  expect(targets, DType::i32, "cross_entropy: targets");
  const int64_t rows = targets.numel(), padded = logits.numel() / std::max<int64_t>(rows, 1);
  DAPE_CHECK(padded * rows == logits.numel() && padded >= vocab,
             "cross_entropy: logits {} do not hold {} rows of at least {} columns",
             logits.shape.str(), rows, vocab);
  expect_numel(losses, rows, "cross_entropy: losses");
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::cross_entropy(losses.ptr<T>(), logits.ptr<T>(), targets.ptr<int32_t>(), rows, vocab,
                       padded, grad_scale);
  });
}

void CpuOps::cross_entropy_slice_stats(const Tensor& stats, const Tensor& logits,
                                       const Tensor& targets, int64_t vocab_begin, int vocab) {
  expect(targets, DType::i32, "cross_entropy_slice_stats: targets");
  const int64_t rows = targets.numel(), width = logits.numel() / std::max<int64_t>(rows, 1);
  DAPE_CHECK(width * rows == logits.numel(), "cross_entropy_slice_stats: logits {} for {} rows",
             logits.shape.str(), rows);
  expect_numel(stats, rows * 3, "cross_entropy_slice_stats: stats");
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::cross_entropy_slice_stats(stats.ptr<T>(), logits.ptr<T>(), targets.ptr<int32_t>(), rows,
                                   width, vocab_begin, vocab);
  });
}

void CpuOps::cross_entropy_from_slice_stats(const Tensor& losses, const Tensor& logits,
                                            const Tensor& all_stats, const Tensor& targets,
                                            int64_t vocab_begin, int vocab, double grad_scale) {
  expect(targets, DType::i32, "cross_entropy_from_slice_stats: targets");
  const int64_t rows = targets.numel(), width = logits.numel() / std::max<int64_t>(rows, 1);
  DAPE_CHECK(width * rows == logits.numel(),
             "cross_entropy_from_slice_stats: logits {} for {} rows", logits.shape.str(), rows);
  const int64_t slices = all_stats.numel() / std::max<int64_t>(rows * 3, 1);
  DAPE_CHECK(slices >= 1 && slices * rows * 3 == all_stats.numel(),
             "cross_entropy_from_slice_stats: stats {} for {} rows", all_stats.shape.str(), rows);
  expect_numel(losses, rows, "cross_entropy_from_slice_stats: losses");
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::cross_entropy_from_slice_stats(losses.ptr<T>(), logits.ptr<T>(), all_stats.ptr<T>(),
                                        slices, targets.ptr<int32_t>(), rows, width, vocab_begin,
                                        vocab, grad_scale);
  });
}

void CpuOps::adamw(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v,
                   const AdamWHyper& h) {
  const int64_t n = params.numel();
  expect_numel(grads, n, "adamw: grads");
  expect_numel(m, n, "adamw: m");
  expect_numel(v, n, "adamw: v");
  dispatch(dtype_, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    cpu::adamw(params.ptr<T>(), grads.ptr<T>(), m.ptr<T>(), v.ptr<T>(), n, h);
  });
}

}  // namespace dape
