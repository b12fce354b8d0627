// Counts the CUDA devices visible to this process (kernels/cuda_device.h).
#include <cuda_runtime.h>

#include <string>

#include "kernels/cuda_device.h"

namespace dape {

CudaDevices query_cuda_devices() {
  CudaDevices d;
  d.built_with_cuda = true;
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    d.reason = std::string("no CUDA device (") + cudaGetErrorString(err) + ")";
    return d;
  }
  if (n == 0) {
    d.reason = "no CUDA device";
    return d;
  }
  d.count = n;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    d.description += std::to_string(i) + ": " + p.name + " (sm_" + std::to_string(p.major) +
                     std::to_string(p.minor) + ", " + std::to_string(p.totalGlobalMem >> 20) +
                     " MiB)\n";
  }
  return d;
}

}  // namespace dape
