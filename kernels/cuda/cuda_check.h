/*
 * Error checks for CUDA runtime calls and kernel launches, usable from .cu files (no fmt or
 * spdlog headers here; the message is built in cuda_check.cpp).
 *
 * A failing call throws dape::Error with the call's text, the CUDA error's name and description,
 * and the source location: device errors (out of memory, a lost device, an illegal address
 * found at the next synchronization) are the environment's doing or a kernel bug, and either
 * way the run must stop with a message, not continue on garbage.
 */
#pragma once

#include <cuda_runtime.h>

namespace dape::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line);

inline void check_cuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess) throw_cuda_error(err, what, file, line);
}

}  // namespace dape::cuda

// DAPE_CUDA_CHECK(cudaMemcpyAsync(...)): throws on any error the call returns.
#define DAPE_CUDA_CHECK(expr) ::dape::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
// After kernel<<<...>>>(...): reports a launch error (bad configuration, no kernel image for the
// device) under the kernel's name.
#define DAPE_CUDA_LAUNCHED(kernel_name) \
  ::dape::cuda::check_cuda(cudaGetLastError(), "launch of " kernel_name, __FILE__, __LINE__)
