// Messages for failed CUDA calls (kernels/cuda/cuda_check.h).
#include "kernels/cuda/cuda_check.h"

#include "common/check.h"

namespace dape::cuda {

void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  fail("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(err), cudaGetErrorString(err), what,
       file, line);
}

}  // namespace dape::cuda
