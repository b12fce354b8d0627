/*
 * The reference attention for a device backend: the CPU oracle run on host copies.
 *
 * AttentionImpl::reference on CUDA is the CPU's materialized attention
 * (kernels/cpu/attention_reference.h), so the GPU tests compare the fused CUDA kernels with the
 * same oracle as the CPU tests. It is slow by design: every input is downloaded, the CPU
 * computes, the results are uploaded, with a synchronization in between.
 *
 * Only the Ops interface is used (copy_to_host, copy_from_host, copy_2d), on float32 tensors.
 * q, k and v are strided views, possibly into one fused QKV buffer: for each the whole span its
 * strides cover is downloaded into a host buffer at the same offsets, so the host tensors keep
 * the device tensors' strides and shapes. In backward, dq, dk and dv are overwritten only where
 * the attention writes them (each token's row segment of H·D, or Hl·D for dv): the host span is
 * uploaded to a device temporary and copied row by row into place, so the other columns of a
 * fused dQKV buffer are left alone. Parameter gradients are accumulated: their current values are
 * downloaded, the CPU adds to them, and they are uploaded back.
 */
#pragma once

#include "kernels/ops.h"

namespace dape::cuda {

void host_reference_attention_forward(Ops& ops, const AttentionInputs& in, const Tensor& out,
                                      const Tensor& lse);

void host_reference_attention_backward(Ops& ops, const AttentionInputs& in, const Tensor& out,
                                       const Tensor& lse, const Tensor& dout,
                                       const AttentionGrads& grads);

}  // namespace dape::cuda
