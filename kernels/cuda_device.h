/*
 * What CUDA devices this process can use. Compiled from kernels/cuda/device_query.cu in builds
 * that found nvcc, and from kernels/cuda/no_cuda.cpp otherwise, so callers need no #ifdef.
 */
#pragma once

#include <string>

namespace dape {

struct CudaDevices {
  bool built_with_cuda = false;
  int count = 0;
  std::string reason;       // why count is 0, for messages such as "skipped: no CUDA device"
  std::string description;  // one line per device
};

CudaDevices query_cuda_devices();

}  // namespace dape
