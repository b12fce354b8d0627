/*
 * The CUDA backend's entry points, callable from any build.
 *
 * The model and the trainer hold an Ops; on a GPU it is a CudaOps (kernels/cuda/cuda_ops.h),
 * made here. In builds without nvcc the same functions exist (kernels/cuda/no_cuda.cpp) and
 * throw a dape::Error saying that this build has no CUDA backend, so callers need no #ifdef.
 *
 * Precision. Every tensor the model sees is float32 in device memory: parameters (the fp32
 * master weights), optimizer state, activations and gradients. In bf16 mode the GEMMs and the
 * fused attention convert their operands to bf16 and run on tensor cores with fp32
 * accumulation; in fp32 mode they compute in fp32 (the mode the GPU tests compare to the CPU
 * with tight tolerances). Elementwise kernels, reductions, softmax statistics and the optimizer
 * are fp32 in both.
 */
#pragma once

#include <memory>
#include <string>

#include "kernels/ops.h"

namespace dape {

enum class CudaPrecision : uint8_t { fp32, bf16 };

const char* cuda_precision_name(CudaPrecision p);
// Parses "fp32|bf16"; returns false for anything else.
bool parse_cuda_precision(const std::string& name, CudaPrecision* out);

struct CudaOpsOptions {
  int device = 0;  // the CUDA device ordinal this Ops uses (made current by make_cuda_ops)
  CudaPrecision precision = CudaPrecision::bf16;
};

// A CUDA Ops on one device, with its own compute stream. Throws dape::Error when the build has
// no CUDA backend or the device cannot be used (the message says which and why).
std::unique_ptr<Ops> make_cuda_ops(const CudaOpsOptions& options);

// The compute stream (a cudaStream_t) of an Ops made by make_cuda_ops, for communicators that
// enqueue collectives after its work; nullptr for any other backend.
void* cuda_stream_of(Ops& ops);

}  // namespace dape
