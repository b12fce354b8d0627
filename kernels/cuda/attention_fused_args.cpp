// The fused attention's launchers (kernels/cuda/attention_fused.h): check the arguments, plan the
// shared-memory layouts for the current device, launch (attention_fused.cu).
#include "kernels/cuda/attention_fused_args.h"

#include "kernels/cuda/attention_fused.h"
#include "kernels/cuda/attention_fused_launch.h"
#include "kernels/cuda/cuda_check.h"

namespace dape::cuda {
namespace {

namespace tiling = dape::attention_tiling;

// Bytes of dynamic shared memory a block may use on the current device (with the opt-in).
int64_t shared_memory_limit() {
  int device = 0, bytes = 0;
  DAPE_CUDA_CHECK(cudaGetDevice(&device));
  DAPE_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return bytes;
}

}  // namespace

void check_attention_arguments(const AttentionInputs& in) {
  (void)attention_kernel_inputs(in);
}

void attention_fused_forward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                             bool bf16, cudaStream_t stream) {
  AttentionKernelParams p = attention_kernel_inputs(in);
  set_forward_outputs(&p, out, lse);
  p.layout = plan_layout(tiling::TileKernel::forward, p, bf16, shared_memory_limit());
  launch_attention_forward(p, stream);
}

void attention_fused_backward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                              const Tensor& dout, const AttentionGrads& grads, bool bf16,
                              cudaStream_t stream) {
  AttentionKernelParams p = attention_kernel_inputs(in);
  set_backward_tensors(&p, in, out, lse, dout, grads);
  const int64_t limit = shared_memory_limit();
  AttentionKernelParams dq = p, dkdv = p;
  dq.layout = plan_layout(tiling::TileKernel::dq, p, bf16, limit);
  dkdv.layout = plan_layout(tiling::TileKernel::dkdv, p, bf16, limit);
  launch_attention_backward(dq, dkdv, stream);
}

}  // namespace dape::cuda
