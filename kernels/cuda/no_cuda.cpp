// Builds without nvcc: there is no CUDA backend (kernels/cuda_device.h).
#include "kernels/cuda_device.h"

namespace dape {

CudaDevices query_cuda_devices() {
  CudaDevices d;
  d.reason = "this build has no CUDA backend (nvcc was not found or DAPE_CUDA=OFF)";
  return d;
}

}  // namespace dape
