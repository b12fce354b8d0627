#include <gtest/gtest.h>

#include "kernels/cpu/cpu_ops.h"

namespace dape {

TEST(Tensor, SliceAndReshapeCheckBounds) {
  CpuOps ops(DType::f32);
  auto buf = ops.float_buffer({4, 6});
  Tensor s = buf.tensor().slice(6, {2, 6});
  EXPECT_EQ(static_cast<float*>(s.data) - static_cast<float*>(buf.tensor().data), 6);
  EXPECT_EQ(s.reshape({12}).shape.str(), "[12]");
  EXPECT_THROW(buf.tensor().slice(20, {1, 6}), InternalError);
  EXPECT_THROW(buf.tensor().ptr<double>(), InternalError);
}

TEST(Tensor, HostRoundTripConvertsTypes) {
  CpuOps ops(DType::f64);
  auto buf = ops.float_buffer({3});
  upload(ops, buf, std::vector<float>{1.5f, -2.0f, 3.25f});
  auto back = download<double>(ops, buf);
  EXPECT_EQ(back, (std::vector<double>{1.5, -2.0, 3.25}));
}

}  // namespace dape
