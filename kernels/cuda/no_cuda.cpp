// Builds without nvcc: there is no CUDA backend (kernels/cuda_device.h, kernels/cuda_backend.h).
#include "common/check.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda_device.h"

namespace dape {

namespace {
constexpr const char* kNoCuda =
    "this build has no CUDA backend (nvcc was not found or DAPE_CUDA=OFF)";
}

CudaDevices query_cuda_devices() {
  CudaDevices d;
  d.reason = kNoCuda;
  return d;
}

std::unique_ptr<Ops> make_cuda_ops(const CudaOpsOptions& options) {
  fail("cannot use CUDA device {}: {}", options.device, kNoCuda);
}

void* cuda_stream_of(Ops&) {
  return nullptr;
}

}  // namespace dape
