// The MPI communicator's collectives on host buffers, run under mpirun with 1, 2 and 3 ranks.
#include <gtest/gtest.h>

#include <numeric>

#include "kernels/cpu/cpu_ops.h"
#include "parallel/comm.h"

namespace dape::test {
extern Communicator* g_world;
}

namespace dape {
namespace {

Communicator& world() {
  return *test::g_world;
}

TEST(Communicator, WorldMatchesTheLauncher) {
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  ASSERT_NE(size, nullptr) << "run under mpirun";
  EXPECT_EQ(world().size(), std::atoi(size));
  EXPECT_EQ(world().name(), "mpi");
}

TEST(Communicator, AllReduceSumsFloatTensorsAndScalars) {
  CpuOps ops(DType::f32, 1);
  const int r = world().rank(), n = world().size();
  auto x = ops.float_buffer({5});
  std::vector<float> host = {1.f * r, 2.f, -3.f * r, 0.5f, 100.f + r};
  upload(ops, x, host);
  world().all_reduce_sum(x.tensor());
  const auto got = download<float>(ops, x);
  const float tri = n * (n - 1) / 2.0f;
  EXPECT_EQ(got, (std::vector<float>{tri, 2.f * n, -3.f * tri, 0.5f * n, 100.f * n + tri}));
  EXPECT_EQ(world().all_reduce_sum(1.5), 1.5 * n);
  std::vector<int64_t> counts = {int64_t{r}, 1, int64_t{1} << 40};
  world().all_reduce_sum(counts.data(), 3);
  EXPECT_EQ(counts, (std::vector<int64_t>{int64_t{n} * (n - 1) / 2, n, (int64_t{1} << 40) * n}));
}

TEST(Communicator, AllGatherAndReduceScatterAreRankMajor) {
  CpuOps ops(DType::f64, 1);
  const int r = world().rank(), n = world().size();
  auto in = ops.float_buffer({2});
  upload(ops, in, std::vector<double>{10.0 * r, 10.0 * r + 1});
  auto out = ops.float_buffer({2 * n});
  world().all_gather(out, in);
  const auto gathered = download<double>(ops, out);
  for (int k = 0; k < n; ++k) {
    EXPECT_EQ(gathered[2 * k], 10.0 * k);
    EXPECT_EQ(gathered[2 * k + 1], 10.0 * k + 1);
  }
  // Every rank contributes 1..2n; rank r receives slice r of the sum.
  auto full = ops.float_buffer({2 * n});
  std::vector<double> ones(2 * n);
  std::iota(ones.begin(), ones.end(), 1.0);
  upload(ops, full, ones);
  auto slice = ops.float_buffer({2});
  world().reduce_scatter_sum(slice, full);
  EXPECT_EQ(download<double>(ops, slice),
            (std::vector<double>{(2.0 * r + 1) * n, (2.0 * r + 2) * n}));
}

TEST(Communicator, BroadcastAndBytes) {
  CpuOps ops(DType::f32, 1);
  const int r = world().rank(), n = world().size();
  auto x = ops.float_buffer({3});
  upload(ops, x, std::vector<float>{1.f * r, 2.f * r, 3.f * r});
  world().broadcast(x, n - 1);
  EXPECT_EQ(download<float>(ops, x),
            (std::vector<float>{1.f * (n - 1), 2.f * (n - 1), 3.f * (n - 1)}));
  const auto all = world().all_gather_bytes(std::string(static_cast<size_t>(r), 'a' + r));
  ASSERT_EQ(static_cast<int>(all.size()), n);
  for (int k = 0; k < n; ++k) EXPECT_EQ(all[k], std::string(static_cast<size_t>(k), 'a' + k));
  EXPECT_EQ(world().broadcast_bytes(r == 0 ? "from rank 0" : "", 0), "from rank 0");
  world().barrier();
}

}  // namespace
}  // namespace dape
