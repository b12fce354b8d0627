/*
 * The fused DAPE attention on CUDA: declarations of the host-side launchers (attention_fused.cu
 * holds the kernels and the design notes). Semantics are those of Ops::attention_forward /
 * attention_backward with AttentionImpl::fused (kernels/attention.h), on device tensors of
 * float32; `bf16` runs the tile GEMMs on tensor cores with bf16 operands and fp32 accumulation.
 */
#pragma once

#include <cuda_runtime.h>

#include "kernels/attention.h"

namespace dape::cuda {

// Checks the arguments (shapes, strides, head range, parameter tensors) and throws a
// dape::Error / internal error naming what is wrong; called by both launchers.
void check_attention_arguments(const AttentionInputs& in);

void attention_fused_forward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                             bool bf16, cudaStream_t stream);
// Temporary device memory (per-block partial sums of the parameter gradients) is taken from and
// returned to the stream-ordered allocator.
void attention_fused_backward(const AttentionInputs& in, const Tensor& out, const Tensor& lse,
                              const Tensor& dout, const AttentionGrads& grads, bool bf16,
                              cudaStream_t stream);

}  // namespace dape::cuda
