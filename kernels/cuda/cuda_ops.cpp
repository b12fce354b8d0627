// CudaOps (kernels/cuda/cuda_ops.h) and the CUDA backend's entry points (kernels/cuda_backend.h).
#include "kernels/cuda/cuda_ops.h"

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/check.h"
#include "common/log.h"
#include "kernels/cuda/attention_fused.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/host_reference_attention.h"
#include "kernels/cuda/launch.h"
#include "kernels/ops_checks.h"

namespace dape {
namespace {

template <class T>
T* opt(const Tensor& t) {
  return t.defined() ? t.ptr<T>() : nullptr;
}

// Device tensors of this backend hold float32 or int32.
void expect_device_dtype(const Tensor& t, const char* what) {
  DAPE_CHECK(t.dtype == DType::f32 || t.dtype == DType::i32,
             "{}: CUDA tensors hold f32 or i32, not {}", what, dtype_name(t.dtype));
}

void expect_host_dtype(DType t, const char* what) {
  DAPE_CHECK(t == DType::f32 || t == DType::f64 || t == DType::i32,
             "{}: the host side must hold f32, f64 or i32, not {}", what, dtype_name(t));
}

int64_t round_up(int64_t x, int64_t to) {
  return (x + to - 1) / to * to;
}

}  // namespace

// ---- setup ------------------------------------------------------------------------------------

void CudaOps::BadIdFlag::arm(int64_t vocab) {
  if (!armed) {
    vocab_min = vocab_max = vocab;
    armed = true;
  } else {
    vocab_min = std::min(vocab_min, vocab);
    vocab_max = std::max(vocab_max, vocab);
  }
}

CudaOps::CudaOps(const CudaOpsOptions& options)
    : device_(options.device), precision_(options.precision) {
  try {
    DAPE_CUDA_CHECK(cudaSetDevice(device_));
    DAPE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // Keep freed memory in the pool for reuse instead of returning it at every synchronization.
    cudaMemPool_t pool = nullptr;
    DAPE_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_));
    uint64_t threshold = std::numeric_limits<uint64_t>::max();
    DAPE_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));

    gemms_ = std::make_unique<cuda::LinearGemms>(stream_, precision_ == CudaPrecision::bf16);

    DAPE_CUDA_CHECK(cudaHostAlloc(&staging_, static_cast<size_t>(kStagingSlots * kStagingSlotBytes),
                                  cudaHostAllocDefault));
    for (cudaEvent_t& e : staging_free_) {
      DAPE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      DAPE_CUDA_CHECK(cudaEventRecord(e, stream_));
    }

    void* mailbox = nullptr;
    DAPE_CUDA_CHECK(cudaHostAlloc(&mailbox, sizeof(HostMailbox), cudaHostAllocMapped));
    mailbox_ = static_cast<HostMailbox*>(mailbox);
    mailbox_->bad_token = kNoBadId;
    mailbox_->bad_target = kNoBadId;
    mailbox_->sum_squares = 0;
    void* mailbox_device = nullptr;
    DAPE_CUDA_CHECK(cudaHostGetDevicePointer(&mailbox_device, mailbox, 0));
    mailbox_device_ = static_cast<HostMailbox*>(mailbox_device);
    bad_token_.host = &mailbox_->bad_token;
    bad_token_.device = &mailbox_device_->bad_token;
    bad_target_.host = &mailbox_->bad_target;
    bad_target_.device = &mailbox_device_->bad_target;
    DAPE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  } catch (...) {
    release();
    throw;
  }
}

CudaOps::~CudaOps() {
  release();
}

void CudaOps::release() noexcept {
  // No error can be thrown from here (the destructor, or a failed constructor unwinding). After a
  // device error every call below fails the same way, and the process is ending that run anyway.
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  gemms_.reset();  // enqueues the release of its workspace on the stream
  if (scratch_) cudaFreeAsync(scratch_, stream_);
  scratch_ = nullptr;
  scratch_bytes_ = 0;
  if (stream_) cudaStreamSynchronize(stream_);
  for (cudaEvent_t& e : staging_free_) {
    if (e) cudaEventDestroy(e);
    e = nullptr;
  }
  if (staging_) cudaFreeHost(staging_);
  staging_ = nullptr;
  if (mailbox_) cudaFreeHost(mailbox_);
  mailbox_ = nullptr;
  mailbox_device_ = nullptr;
  if (stream_) cudaStreamDestroy(stream_);
  stream_ = nullptr;
}

void CudaOps::make_current() const {
  DAPE_CUDA_CHECK(cudaSetDevice(device_));
}

void CudaOps::synchronize() {
  make_current();
  synchronize_and_check();
}

void CudaOps::synchronize_and_check() {
  DAPE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  check_flag(bad_token_, "embedding_forward: token id");
  check_flag(bad_target_, "cross_entropy: target");
}

void CudaOps::check_flag(BadIdFlag& flag, const char* what) {
  if (!flag.armed) return;
  flag.armed = false;
  // Written by the device through the mapping; the stream has been synchronized.
  const int32_t id = *static_cast<volatile int32_t*>(flag.host);
  if (id == kNoBadId) return;
  *flag.host = kNoBadId;  // reported once; this Ops stays usable after the exception
  const std::string range =
      flag.vocab_min == flag.vocab_max
          ? fmt::format("[0, {})", flag.vocab_max)
          : fmt::format(
                "the vocabulary of one of the calls since the last synchronization, "
                "[0, {}) to [0, {})",
                flag.vocab_min, flag.vocab_max);
  throw_internal(__FILE__, __LINE__, "a kernel flagged a bad id",
                 fmt::format("{} {} is outside {} (CUDA device {}; the row is not known)", what, id,
                             range, device_));
}

void* CudaOps::scratch(int64_t bytes) {
  if (bytes <= scratch_bytes_) return scratch_;
  // Grow in whole MiB. The old buffer is released in stream order, after the work that uses it.
  const int64_t size = round_up(bytes, int64_t{1} << 20);
  void* old = scratch_;
  scratch_ = nullptr;
  scratch_bytes_ = 0;
  if (old) DAPE_CUDA_CHECK(cudaFreeAsync(old, stream_));
  scratch_ = allocate(size);
  scratch_bytes_ = size;
  return scratch_;
}

// ---- memory -----------------------------------------------------------------------------------

void* CudaOps::allocate(int64_t bytes) {
  DAPE_CHECK(bytes >= 0, "allocate: negative size {}", bytes);
  make_current();
  // Zero bytes still get a distinct, non-null pointer, as from CpuOps.
  const size_t size = static_cast<size_t>(std::max<int64_t>(bytes, 1));
  void* p = nullptr;
  cudaError_t err = cudaMallocAsync(&p, size, stream_);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // an allocation failure is not sticky; clear it
    // Memory freed into the pool is kept there for reuse and may be fragmented: return it to the
    // device once the stream is idle, and try again.
    DAPE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    cudaMemPool_t pool = nullptr;
    DAPE_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_));
    DAPE_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
    err = cudaMallocAsync(&p, size, stream_);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      DAPE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
      fail(
          "out of memory on CUDA device {}: could not allocate {} bytes ({:.1f} MiB); {} bytes "
          "({:.1f} MiB) of {:.1f} MiB are free",
          device_, bytes, static_cast<double>(bytes) / (1 << 20), free_bytes,
          static_cast<double>(free_bytes) / (1 << 20),
          static_cast<double>(total_bytes) / (1 << 20));
    }
  }
  cuda::check_cuda(err, "cudaMallocAsync", __FILE__, __LINE__);
  return p;
}

void CudaOps::deallocate(void* p) {
  if (p == nullptr) return;
  // Called from destructors (DeviceBuffer), also while an exception unwinds: report, never throw.
  cudaSetDevice(device_);
  const cudaError_t err = cudaFreeAsync(p, stream_);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    DAPE_LOG_ERROR("CUDA device {}: cudaFreeAsync failed: {} ({}); the memory stays allocated",
                   device_, cudaGetErrorName(err), cudaGetErrorString(err));
  }
}

void CudaOps::copy_from_host(const Tensor& dst, const void* src, DType host_dtype) {
  expect_device_dtype(dst, "copy_from_host");
  expect_host_dtype(host_dtype, "copy_from_host");
  const int64_t n = dst.numel();
  if (n == 0) return;
  DAPE_CHECK(dst.defined() && src != nullptr, "copy_from_host: null pointer for {} elements", n);
  make_current();
  const int64_t bytes = dst.nbytes();
  if (bytes <= kStagingSlotBytes) {
    // Through a pinned slot: the caller's memory is read before this returns, the device copy
    // proceeds on its own.
    const int slot = next_staging_slot_;
    next_staging_slot_ = (next_staging_slot_ + 1) % kStagingSlots;
    DAPE_CUDA_CHECK(cudaEventSynchronize(staging_free_[slot]));
    void* staged = static_cast<char*>(staging_) + slot * kStagingSlotBytes;
    convert_values(staged, dst.dtype, src, host_dtype, n);
    DAPE_CUDA_CHECK(cudaMemcpyAsync(dst.data, staged, static_cast<size_t>(bytes),
                                    cudaMemcpyHostToDevice, stream_));
    DAPE_CUDA_CHECK(cudaEventRecord(staging_free_[slot], stream_));
    return;
  }
  const void* from = src;
  std::vector<char> converted;
  if (host_dtype != dst.dtype) {
    converted.resize(static_cast<size_t>(bytes));
    convert_values(converted.data(), dst.dtype, src, host_dtype, n);
    from = converted.data();
  }
  DAPE_CUDA_CHECK(
      cudaMemcpyAsync(dst.data, from, static_cast<size_t>(bytes), cudaMemcpyHostToDevice, stream_));
  DAPE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaOps::copy_to_host(void* dst, DType host_dtype, const Tensor& src) {
  expect_device_dtype(src, "copy_to_host");
  expect_host_dtype(host_dtype, "copy_to_host");
  const int64_t n = src.numel();
  if (n == 0) return;
  DAPE_CHECK(src.defined() && dst != nullptr, "copy_to_host: null pointer for {} elements", n);
  make_current();
  const auto bytes = static_cast<size_t>(src.nbytes());
  if (host_dtype == src.dtype) {
    DAPE_CUDA_CHECK(cudaMemcpyAsync(dst, src.data, bytes, cudaMemcpyDeviceToHost, stream_));
    synchronize_and_check();
    return;
  }
  std::vector<char> raw(bytes);
  DAPE_CUDA_CHECK(cudaMemcpyAsync(raw.data(), src.data, bytes, cudaMemcpyDeviceToHost, stream_));
  synchronize_and_check();
  convert_values(dst, host_dtype, raw.data(), src.dtype, n);
}

void CudaOps::copy(const Tensor& dst, const Tensor& src) {
  check_copy(dst, src);
  if (dst.data == src.data || src.numel() == 0) return;
  make_current();
  DAPE_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, static_cast<size_t>(src.nbytes()),
                                  cudaMemcpyDeviceToDevice, stream_));
}

void CudaOps::copy_2d(const Tensor& dst, int64_t dst_stride, const Tensor& src, int64_t src_stride,
                      int64_t rows, int64_t cols) {
  check_copy_2d(dst, dst_stride, src, src_stride, rows, cols);
  if (rows == 0 || cols == 0) return;
  make_current();
  const auto es = static_cast<size_t>(dtype_size(src.dtype));
  DAPE_CUDA_CHECK(cudaMemcpy2DAsync(dst.data, static_cast<size_t>(dst_stride) * es, src.data,
                                    static_cast<size_t>(src_stride) * es,
                                    static_cast<size_t>(cols) * es, static_cast<size_t>(rows),
                                    cudaMemcpyDeviceToDevice, stream_));
}

// ---- elementwise and reductions -----------------------------------------------------------------

void CudaOps::fill(const Tensor& x, double value) {
  const int64_t n = x.numel();
  if (x.dtype == DType::i32) {
    if (n == 0) return;
    make_current();
    if (static_cast<int32_t>(value) == 0) {
      DAPE_CUDA_CHECK(cudaMemsetAsync(x.data, 0, static_cast<size_t>(x.nbytes()), stream_));
    } else {
      const std::vector<int32_t> values(static_cast<size_t>(n), static_cast<int32_t>(value));
      copy_from_host(x, values.data(), DType::i32);
    }
    return;
  }
  float* p = x.ptr<float>();
  if (n == 0) return;
  make_current();
  cuda::fill(p, n, static_cast<float>(value), stream_);
}

void CudaOps::scale(const Tensor& x, double factor) {
  float* p = x.ptr<float>();
  if (x.numel() == 0) return;
  make_current();
  cuda::scale(p, x.numel(), static_cast<float>(factor), stream_);
}

void CudaOps::add(const Tensor& out, const Tensor& a, const Tensor& b) {
  check_add(out, a, b);
  float* o = out.ptr<float>();
  const float* pa = a.ptr<float>();
  const float* pb = b.ptr<float>();
  if (out.numel() == 0) return;
  make_current();
  cuda::add(o, pa, pb, out.numel(), stream_);
}

void CudaOps::clamp_min(const Tensor& x, double lo) {
  float* p = x.ptr<float>();
  if (x.numel() == 0) return;
  make_current();
  cuda::clamp_min(p, x.numel(), static_cast<float>(lo), stream_);
}

double CudaOps::sum_squares(const Tensor& x) {
  const float* p = x.ptr<float>();
  const int64_t n = x.numel();
  if (n == 0) return 0.0;
  make_current();
  // [workspace doubles | result], the result at a 256-byte boundary.
  const int64_t workspace_bytes =
      round_up(cuda::sum_squares_workspace(n) * int64_t{sizeof(double)}, 256);
  auto* base = static_cast<char*>(scratch(workspace_bytes + 256));
  auto* workspace = reinterpret_cast<double*>(base);
  auto* result = reinterpret_cast<double*>(base + workspace_bytes);
  cuda::sum_squares(p, n, workspace, result, stream_);
  DAPE_CUDA_CHECK(cudaMemcpyAsync(&mailbox_->sum_squares, result, sizeof(double),
                                  cudaMemcpyDeviceToHost, stream_));
  synchronize_and_check();
  return mailbox_->sum_squares;
}

// ---- embedding --------------------------------------------------------------------------------

void CudaOps::embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& wte,
                                const Tensor& wpe, int seq_len, int pos_offset,
                                int64_t vocab_begin) {
  const auto [rows, C] = check_embedding_forward(out, tokens, wte, wpe);
  const int64_t V = wte.shape[0];
  if (wpe.defined()) check_positions(rows, wpe.shape[0], seq_len, pos_offset, "embedding_forward");
  if (rows == 0 || C == 0) return;
  // Every id is bad for an empty table, including the flag's idle value 0.
  DAPE_CHECK(vocab_begin >= 0 || V > 0, "embedding_forward: token ids for an empty table wte {}",
             wte.shape.str());
  float* o = out.ptr<float>();
  const int32_t* t = tokens.ptr<int32_t>();
  const float* table = wte.ptr<float>();
  const float* positions = opt<float>(wpe);
  make_current();
  if (vocab_begin < 0) bad_token_.arm(V);
  cuda::embedding_forward(o, t, table, V, positions, rows, C, seq_len, pos_offset, vocab_begin,
                          bad_token_.device, stream_);
}

void CudaOps::embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                                 const Tensor& tokens, int seq_len, int pos_offset,
                                 int64_t vocab_begin) {
  const auto [rows, C] = check_embedding_backward(dwte, dwpe, dout, tokens);
  if (dwpe.defined()) {
    check_positions(rows, dwpe.shape[0], seq_len, pos_offset, "embedding_backward");
  }
  float* dtable = dwte.ptr<float>();
  float* dpositions = opt<float>(dwpe);
  const float* d = dout.ptr<float>();
  const int32_t* t = tokens.ptr<int32_t>();
  if (rows == 0 || C == 0) return;
  make_current();
  void* workspace = scratch(cuda::embedding_backward_workspace(rows));
  cuda::embedding_backward(dtable, dwte.shape[0], dpositions, d, t, rows, C, seq_len, pos_offset,
                           vocab_begin, workspace, stream_);
}

// ---- layer norm -------------------------------------------------------------------------------

void CudaOps::layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                                const Tensor& x, const Tensor& w, const Tensor& b) {
  const auto [rows, C] = check_layernorm_forward(out, mean, rstd, x, w, b);
  float* o = out.ptr<float>();
  float* mu = mean.ptr<float>();
  float* rs = rstd.ptr<float>();
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  const float* pb = b.ptr<float>();
  if (rows == 0) return;
  make_current();
  cuda::layernorm_forward(o, mu, rs, px, pw, pb, rows, C, stream_);
}

void CudaOps::layernorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                                 const Tensor& dout, const Tensor& x, const Tensor& w,
                                 const Tensor& mean, const Tensor& rstd) {
  const auto [rows, C] = check_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
  float* pdx = dx.ptr<float>();
  float* pdw = dw.ptr<float>();
  float* pdb = db.ptr<float>();
  const float* pd = dout.ptr<float>();
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  const float* mu = mean.ptr<float>();
  const float* rs = rstd.ptr<float>();
  if (rows == 0) return;
  make_current();
  auto* workspace = static_cast<float*>(
      scratch(cuda::layernorm_backward_workspace(rows, C) * int64_t{sizeof(float)}));
  cuda::layernorm_backward(pdx, pdw, pdb, pd, px, pw, mu, rs, rows, C, workspace, stream_);
}

// ---- linear layers ----------------------------------------------------------------------------

void CudaOps::matmul_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b) {
  const auto [M, N, K] = check_matmul_forward(out, x, w, b);
  float* o = out.ptr<float>();
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  const float* pb = opt<float>(b);
  make_current();
  gemms_->forward(o, px, pw, pb, M, N, K);
}

void CudaOps::matmul_backward(const Tensor& dx, const Tensor& dw, const Tensor& db,
                              const Tensor& dout, const Tensor& x, const Tensor& w,
                              bool accumulate_dx) {
  const auto [M, N, K] = check_matmul_backward(dx, dw, db, dout, x, w);
  float* pdx = opt<float>(dx);
  float* pdw = dw.ptr<float>();
  float* pdb = opt<float>(db);
  const float* pd = dout.ptr<float>();
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  make_current();
  if (pdx != nullptr) gemms_->backward_dx(pdx, pd, pw, M, N, K, accumulate_dx);
  gemms_->backward_dw(pdw, pd, px, M, N, K);
  if (pdb != nullptr && M > 0 && N > 0) {
    auto* workspace =
        static_cast<float*>(scratch(cuda::column_sum_workspace(M, N) * int64_t{sizeof(float)}));
    cuda::column_sum_accumulate(pdb, pd, M, N, workspace, stream_);
  }
}

// ---- GELU -------------------------------------------------------------------------------------

void CudaOps::gelu_forward(const Tensor& out, const Tensor& x) {
  check_gelu_forward(out, x);
  float* o = out.ptr<float>();
  const float* px = x.ptr<float>();
  if (x.numel() == 0) return;
  make_current();
  cuda::gelu_forward(o, px, x.numel(), stream_);
}

void CudaOps::gelu_backward(const Tensor& dx, const Tensor& x, const Tensor& dout) {
  check_gelu_backward(dx, x, dout);
  float* pdx = dx.ptr<float>();
  const float* px = x.ptr<float>();
  const float* pd = dout.ptr<float>();
  if (x.numel() == 0) return;
  make_current();
  cuda::gelu_backward(pdx, px, pd, x.numel(), stream_);
}

// ---- rotary embedding -------------------------------------------------------------------------
// q and k both use shape.qkv_row_stride between tokens, as on the CPU.

void CudaOps::rope_forward(const Tensor& q, const Tensor& k, const AttentionShape& shape,
                           int pos_offset, double base) {
  check_rope(shape, q.defined() && k.defined(), pos_offset, base);
  float* pq = q.ptr<float>();
  float* pk = k.ptr<float>();
  if (shape.batch == 0 || shape.seq_len == 0) return;
  make_current();
  cuda::rope(pq, shape.qkv_row_stride, pk, shape.qkv_row_stride, shape.batch, shape.seq_len,
             shape.heads, shape.head_dim, pos_offset, base, /*inverse=*/false, stream_);
}

void CudaOps::rope_backward(const Tensor& dq, const Tensor& dk, const AttentionShape& shape,
                            int pos_offset, double base) {
  check_rope(shape, dq.defined() && dk.defined(), pos_offset, base);
  float* pq = dq.ptr<float>();
  float* pk = dk.ptr<float>();
  if (shape.batch == 0 || shape.seq_len == 0) return;
  make_current();
  cuda::rope(pq, shape.qkv_row_stride, pk, shape.qkv_row_stride, shape.batch, shape.seq_len,
             shape.heads, shape.head_dim, pos_offset, base, /*inverse=*/true, stream_);
}

// ---- attention --------------------------------------------------------------------------------

void CudaOps::attention_forward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                                AttentionImpl impl) {
  check_attention_forward(in.shape, out, lse);
  make_current();
  if (impl == AttentionImpl::fused) {
    cuda::attention_fused_forward(in, out, lse, precision_ == CudaPrecision::bf16, stream_);
  } else {
    cuda::host_reference_attention_forward(*this, in, out, lse);
  }
}

void CudaOps::attention_backward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                                 const Tensor& dout, const AttentionGrads& grads,
                                 AttentionImpl impl) {
  check_attention_backward(in.shape, out, lse, dout);
  make_current();
  if (impl == AttentionImpl::fused) {
    cuda::attention_fused_backward(in, out, lse, dout, grads, precision_ == CudaPrecision::bf16,
                                   stream_);
  } else {
    cuda::host_reference_attention_backward(*this, in, out, lse, dout, grads);
  }
}

// ---- cross-entropy ----------------------------------------------------------------------------

void CudaOps::cross_entropy(const Tensor& losses, const Tensor& logits, const Tensor& targets,
                            int vocab, double grad_scale) {
  const auto [rows, padded] = check_cross_entropy(losses, logits, targets, vocab);
  // vocab > 0 also keeps the bad-target flag's idle value 0 a valid target.
  DAPE_CHECK(vocab > 0 && vocab <= padded,
             "cross_entropy: vocab {} must be in [1, padded width {}]", vocab, padded);
  float* pl = losses.ptr<float>();
  float* pz = logits.ptr<float>();
  const int32_t* pt = targets.ptr<int32_t>();
  if (rows == 0) return;
  make_current();
  bad_target_.arm(vocab);
  cuda::cross_entropy(pl, pz, pt, rows, padded, vocab, static_cast<float>(grad_scale),
                      bad_target_.device, stream_);
}

void CudaOps::cross_entropy_slice_stats(const Tensor& stats, const Tensor& logits,
                                        const Tensor& targets, int64_t vocab_begin, int vocab) {
  const auto [rows, width] = check_cross_entropy_slice_stats(stats, logits, targets);
  DAPE_CHECK(vocab_begin >= 0 && width > 0, "cross_entropy_slice_stats: slice at {} of width {}",
             vocab_begin, width);
  float* ps = stats.ptr<float>();
  const float* pz = logits.ptr<float>();
  const int32_t* pt = targets.ptr<int32_t>();
  if (rows == 0) return;
  make_current();
  cuda::cross_entropy_slice_stats(ps, pz, pt, rows, width, vocab_begin, vocab, stream_);
}

void CudaOps::cross_entropy_from_slice_stats(const Tensor& losses, const Tensor& logits,
                                             const Tensor& all_stats, const Tensor& targets,
                                             int64_t vocab_begin, int vocab, double grad_scale) {
  const auto [rows, width, slices] =
      check_cross_entropy_from_slice_stats(losses, logits, all_stats, targets);
  float* pl = losses.ptr<float>();
  float* pz = logits.ptr<float>();
  const float* pa = all_stats.ptr<float>();
  const int32_t* pt = targets.ptr<int32_t>();
  if (rows == 0) return;
  make_current();
  cuda::cross_entropy_from_slice_stats(pl, pz, pa, slices, pt, rows, width, vocab_begin, vocab,
                                       static_cast<float>(grad_scale), stream_);
}

// ---- optimizer --------------------------------------------------------------------------------

void CudaOps::adamw(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v,
                    const AdamWHyper& h) {
  check_adamw(params, grads, m, v);
  const int64_t n = params.numel();
  DAPE_CHECK(h.step >= 1, "adamw: step {} must be >= 1 (bias correction is 1-based)", h.step);
  float* pp = params.ptr<float>();
  const float* pg = grads.ptr<float>();
  float* pm = m.ptr<float>();
  float* pv = v.ptr<float>();
  if (n == 0) return;
  make_current();
  cuda::adamw(pp, pg, pm, pv, n, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.step, stream_);
}

// ---- entry points (kernels/cuda_backend.h) ------------------------------------------------------

std::unique_ptr<Ops> make_cuda_ops(const CudaOpsOptions& options) {
  const int device = options.device;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    fail("cannot use CUDA device {}: no CUDA device is usable ({}: {})", device,
         cudaGetErrorName(err), cudaGetErrorString(err));
  }
  if (count == 0) fail("cannot use CUDA device {}: this process sees no CUDA device", device);
  if (device < 0 || device >= count) {
    fail("cannot use CUDA device {}: this process sees {} CUDA device(s), ordinals 0 to {}", device,
         count, count - 1);
  }
  int pools = 0;
  const cudaError_t attr = cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device);
  if (attr != cudaSuccess) {
    (void)cudaGetLastError();
    fail("cannot use CUDA device {}: {} ({})", device, cudaGetErrorName(attr),
         cudaGetErrorString(attr));
  }
  if (pools == 0) {
    fail(
        "cannot use CUDA device {}: it does not support stream-ordered allocation "
        "(cudaMallocAsync)",
        device);
  }
  try {
    return std::make_unique<CudaOps>(options);
  } catch (const Error& e) {
    fail("cannot use CUDA device {}: {}", device, e.what());
  }
}

void* cuda_stream_of(Ops& ops) {
  auto* cuda_ops = dynamic_cast<CudaOps*>(&ops);
  return cuda_ops != nullptr ? static_cast<void*>(cuda_ops->stream()) : nullptr;
}

}  // namespace dape
