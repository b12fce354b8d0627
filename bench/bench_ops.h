/*
 * The Ops a benchmark runs on, from its --device, --precision and --threads: CpuOps in float32
 * (the CPU computes in fp32 only), or CudaOps on device 0 in fp32 or bf16. Benchmarks are one
 * process on one device, so they need none of the launcher's rank-to-device mapping.
 */
#pragma once

#include <memory>
#include <string>

#include "common/check.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda_backend.h"

namespace dape {

// Throws dape::Error for a precision the device does not offer, or a CUDA device that cannot
// be used.
inline std::unique_ptr<Ops> make_bench_ops(const std::string& device, const std::string& precision,
                                           int threads) {
  if (device != "cuda") {
    if (precision != "fp32") fail("--precision {}: the CPU computes in fp32 only", precision);
    return std::make_unique<CpuOps>(DType::f32, threads);
  }
  CudaOpsOptions options;
  if (!parse_cuda_precision(precision, &options.precision))
    fail("--precision {}: expected fp32 or bf16", precision);
  return make_cuda_ops(options);
}

}  // namespace dape
