/*
 * CudaOps: the Ops interface on one CUDA device.
 *
 * Like CpuOps, a dispatcher: it checks shapes and dtypes at the boundary (with CpuOps's
 * messages), then enqueues the kernels of kernels/cuda/launch.h, the fused attention of
 * kernels/cuda/attention_fused.h and the cuBLASLt GEMMs of kernels/cuda/gemm.h on its one
 * compute stream. Calls return once their work is enqueued; synchronize() waits for it.
 *
 * Device and stream. Each CudaOps owns one device (made current at construction and at every
 * entry point, so several CudaOps on different devices can coexist in one process) and one
 * non-blocking stream. Every operation, allocation and copy is ordered on that stream, which
 * is what makes the shared scratch buffer and cuBLASLt workspace safe without further locking.
 * A CudaOps is used from one host thread at a time.
 *
 * Precision. Every tensor is float32 (float_dtype() is f32 in both modes) or int32 (token ids);
 * CudaPrecision only chooses how the GEMMs and the fused attention compute
 * (kernels/cuda_backend.h).
 *
 * Memory. allocate/deallocate use the stream-ordered allocator (cudaMallocAsync/cudaFreeAsync
 * on the compute stream) from the device's default pool, whose release threshold is raised to
 * the maximum so that freed memory stays in the pool and is reused without new driver calls.
 * Running out of memory throws dape::Error with the size asked and the memory still free.
 *
 * Host copies. copy_from_host is safe for the caller's memory when it returns: an upload of up
 * to kStagingSlotBytes is converted (or copied) into one of kStagingSlots pinned buffers, used in
 * turn, and sent with an asynchronous copy, so per-step token and target uploads do not stall
 * the host; reusing a buffer waits for the upload that last left from it (an event), which is
 * long done unless the host runs that many uploads ahead. Larger uploads go straight from the
 * caller's memory and synchronize. copy_to_host always synchronizes. Conversions (f64 <-> f32,
 * i32 <-> f32) are done on the host.
 *
 * Bad ids. The embedding and cross-entropy kernels cannot throw; an id outside the vocabulary
 * is written to a flag in mapped pinned memory that the host reads after each synchronization
 * (synchronize, sum_squares and copy_to_host), and reported as an internal error like CpuOps's.
 * The flag's idle value is 0, the one id that is valid for every non-empty vocabulary, so every
 * value a kernel can write is told apart from it (empty vocabularies are refused up front). The
 * report names the id, not its row, and comes at the next synchronization, not at the call.
 *
 * Attention. AttentionImpl::fused runs the CUDA kernels; AttentionImpl::reference runs the CPU
 * reference (kernels/cpu/attention_reference.h) on host copies of the tensors, as the oracle
 * for the GPU tests: correct, and slow by design (kernels/cuda/host_reference_attention.h).
 */
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/cuda/gemm.h"
#include "kernels/cuda_backend.h"
#include "kernels/ops.h"

namespace dape {

class CudaOps final : public Ops {
 public:
  // Throws dape::Error when the device cannot be set up (make_cuda_ops checks the ordinal first).
  explicit CudaOps(const CudaOpsOptions& options);
  ~CudaOps() override;
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  std::string name() const override { return "cuda"; }
  DType float_dtype() const override { return DType::f32; }
  // Waits for all enqueued work, then reports any bad id the kernels flagged.
  void synchronize() override;

  int device() const { return device_; }
  CudaPrecision precision() const { return precision_; }
  cudaStream_t stream() const { return stream_; }

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

  // Uploads of up to kStagingSlotBytes go through pinned buffers without a host wait.
  static constexpr int kStagingSlots = 4;
  static constexpr int64_t kStagingSlotBytes = int64_t{2} << 20;

 private:
  // A device-written report of a bad id: the id (kNoBadId when none) and the vocabulary sizes
  // of the calls since the last check, for the message.
  struct BadIdFlag {
    int32_t* host = nullptr;    // mapped pinned memory, read after a synchronization
    int32_t* device = nullptr;  // the same memory as the kernels address it
    int64_t vocab_min = 0, vocab_max = 0;
    bool armed = false;  // a kernel that may write it ran since the last check
    void arm(int64_t vocab);
  };
  // What the host reads back from the device without a pageable copy.
  struct HostMailbox {
    int32_t bad_token;
    int32_t bad_target;
    double sum_squares;
  };
  static constexpr int32_t kNoBadId = 0;

  void make_current() const;
  // Waits for the stream, then throws if a kernel flagged a bad id.
  void synchronize_and_check();
  void check_flag(BadIdFlag& flag, const char* what);
  // Device scratch of at least `bytes` (256-byte aligned), ordered on the stream; the pointer is
  // valid until the next call to scratch().
  void* scratch(int64_t bytes);
  void release() noexcept;

  int device_ = 0;
  CudaPrecision precision_ = CudaPrecision::bf16;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::LinearGemms> gemms_;
  void* scratch_ = nullptr;
  int64_t scratch_bytes_ = 0;
  void* staging_ = nullptr;                       // pinned, kStagingSlots × kStagingSlotBytes
  cudaEvent_t staging_free_[kStagingSlots] = {};  // recorded after each slot's last upload
  int next_staging_slot_ = 0;
  HostMailbox* mailbox_ = nullptr;  // mapped pinned memory
  HostMailbox* mailbox_device_ = nullptr;
  BadIdFlag bad_token_, bad_target_;
};

}  // namespace dape
