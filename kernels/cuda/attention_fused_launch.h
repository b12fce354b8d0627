/*
 * The fused attention's kernel launches on plain arguments (attention_fused.cu), called by the
 * launchers of attention_fused.h once the arguments are checked and the shared-memory layouts
 * planned (attention_fused_args.cpp).
 */
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/attention_kernel_params.h"

namespace dape::cuda {

// The forward kernel; p.layout is the forward layout.
void launch_attention_forward(const AttentionKernelParams& p, cudaStream_t stream);

// The dq kernel (with the parameter gradients' partial sums, in a workspace taken from the
// stream-ordered allocator), the dk/dv kernel, and the reduction of the partial sums into the
// parameter gradients. `dq` and `dkdv` hold the same tensors with their kernels' layouts.
void launch_attention_backward(const AttentionKernelParams& dq, const AttentionKernelParams& dkdv,
                               cudaStream_t stream);

}  // namespace dape::cuda
