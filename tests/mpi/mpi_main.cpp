// GoogleTest under mpirun: every rank runs every test; only rank 0 prints, and the exit status is
// non-zero if any rank failed.
#include <gtest/gtest.h>

#include "parallel/comm.h"

namespace dape::test {
Communicator* g_world = nullptr;  // the job's world group, for the tests
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = dape::make_world_communicator();
  dape::test::g_world = world.get();
  if (world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int64_t any = failed;
  world->all_reduce_sum(&any, 1);
  world.reset();
  return any > 0 ? 1 : 0;
}
