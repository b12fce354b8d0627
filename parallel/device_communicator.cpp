// The NCCL communicator where the build has one (parallel/device_communicator.h). CMake compiles
// parallel/nccl/ only with CUDA, and dape_kernels then defines DAPE_WITH_CUDA for its users.
#include "parallel/device_communicator.h"

#include "common/check.h"

#if defined(DAPE_WITH_CUDA)
#include "parallel/nccl/nccl_communicator.h"
#endif

namespace dape {

std::unique_ptr<Communicator> make_device_communicator(std::unique_ptr<Communicator> host,
                                                       void* cuda_stream) {
  DAPE_CHECK(host != nullptr && cuda_stream != nullptr,
             "make_device_communicator needs a host communicator and a CUDA stream");
#if defined(DAPE_WITH_CUDA)
  return std::make_unique<NcclCommunicator>(std::move(host), static_cast<cudaStream_t>(cuda_stream),
                                            NcclOptions::from_environment());
#else
  fail(
      "collectives over CUDA device memory need NCCL, and this build has no CUDA backend (nvcc "
      "was not found or DAPE_CUDA=OFF)");
#endif
}

}  // namespace dape
