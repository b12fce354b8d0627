// GPU tests: they run where a CUDA device is visible and skip with a clear message elsewhere.
#include <gtest/gtest.h>

#include "kernels/cuda_device.h"

namespace dape {
namespace {

TEST(CudaDevice, IsUsableWhenPresent) {
  const CudaDevices d = query_cuda_devices();
  if (d.count == 0) GTEST_SKIP() << "skipped: " << d.reason;
  EXPECT_TRUE(d.built_with_cuda);
  EXPECT_FALSE(d.description.empty());
  std::printf("%s", d.description.c_str());
}

}  // namespace
}  // namespace dape
