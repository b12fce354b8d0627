/*
 * Preconditions of the kernel launchers (kernels/cuda/launch.h). CudaOps validates shapes and
 * dtypes with full messages before it calls a launcher; what is checked here are the limits the
 * kernels themselves rely on (int32 row indices, an even head dimension). .cu files cannot use
 * fmt, so a violated one is reported through the CUDA error path: a dape::Error naming
 * cudaErrorInvalidValue, the condition's message and the source location.
 */
#pragma once

#include "kernels/cuda/cuda_check.h"

namespace dape::cuda {

inline void require_argument(bool ok, const char* what, const char* file, int line) {
  if (!ok) throw_cuda_error(cudaErrorInvalidValue, what, file, line);
}

}  // namespace dape::cuda

// DAPE_CUDA_REQUIRE(rows <= INT32_MAX, "embedding_backward: more than 2^31 - 1 rows").
#define DAPE_CUDA_REQUIRE(cond, message) \
  ::dape::cuda::require_argument((cond), message, __FILE__, __LINE__)
