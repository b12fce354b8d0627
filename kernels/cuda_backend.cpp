// Names of the CUDA precision modes (kernels/cuda_backend.h); compiled in every build.
#include "kernels/cuda_backend.h"

namespace dape {

const char* cuda_precision_name(CudaPrecision p) {
  switch (p) {
    case CudaPrecision::fp32:
      return "fp32";
    case CudaPrecision::bf16:
      return "bf16";
  }
  return "?";
}

bool parse_cuda_precision(const std::string& name, CudaPrecision* out) {
  if (name == "fp32") {
    *out = CudaPrecision::fp32;
  } else if (name == "bf16") {
    *out = CudaPrecision::bf16;
  } else {
    return false;
  }
  return true;
}

}  // namespace dape
