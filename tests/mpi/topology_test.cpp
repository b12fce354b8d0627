// The data-parallel × tensor-parallel grid over the job's ranks (run under mpirun with 1, 2 and 3
// ranks): every TP size that divides the world, the sub-communicators' members checked through
// sums of world ranks, Open MPI's local ranks on this one host, and a TP group refused on every
// rank when its ranks report different hosts.
#include <gtest/gtest.h>

#include <string>

#include "common/check.h"
#include "parallel/topology.h"

namespace dape::test {
extern Communicator* g_world;
}

namespace dape {
namespace {

Communicator& world() {
  return *test::g_world;
}

TEST(Topology, GroupsForEveryTensorParallelSizeThatDividesTheWorld) {
  const int r = world().rank(), n = world().size();
  for (int tp = 1; tp <= n; ++tp) {
    if (n % tp != 0) continue;
    ParallelGroups g = make_parallel_groups(world(), tp);
    const Topology& t = g.topo;
    EXPECT_EQ(t.world_size, n);
    EXPECT_EQ(t.world_rank, r);
    EXPECT_EQ(t.tp, tp);
    EXPECT_EQ(t.dp, n / tp);
    EXPECT_EQ(t.tp_rank, r % tp);
    EXPECT_EQ(t.dp_rank, r / tp);
    // mpirun on one host: Open MPI's local ranks are the world's, on node 0.
    EXPECT_EQ(t.local_rank, r) << t.str();
    EXPECT_EQ(t.local_size, n) << t.str();
    EXPECT_EQ(t.node, 0) << t.str();
    EXPECT_EQ(t.host, local_host_name());
    ASSERT_EQ(g.tp->size(), tp);
    ASSERT_EQ(g.dp->size(), n / tp);
    EXPECT_EQ(g.tp->rank(), r % tp);
    EXPECT_EQ(g.dp->rank(), r / tp);
    // The TP group holds world ranks dp_rank·tp … dp_rank·tp + tp − 1; the DP group the ranks
    // with this tp_rank.
    const int first = (r / tp) * tp;
    EXPECT_EQ(g.tp->all_reduce_sum(static_cast<double>(r)), tp * first + tp * (tp - 1) / 2.0);
    double dp_sum = 0;
    for (int k = r % tp; k < n; k += tp) dp_sum += k;
    EXPECT_EQ(g.dp->all_reduce_sum(static_cast<double>(r)), dp_sum);
    EXPECT_EQ(std::stoi(g.tp->broadcast_bytes(std::to_string(r), 0)), first);
  }
}

TEST(Topology, RefusesTensorParallelSizesThatDoNotDivideTheWorld) {
  const int n = world().size();
  for (int tp : {0, n + 1}) {
    try {
      make_topology(world(), tp);
      ADD_FAILURE() << "tp " << tp << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("must be at least 1 and divide the " +
                                           std::to_string(n) + " ranks"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(Topology, RefusesTensorParallelGroupsAcrossHosts) {
  const int r = world().rank(), n = world().size();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  // No launcher variables and one host per rank: every rank sees the same error.
  const EnvironmentLookup no_launcher = [](const char*) -> const char* { return nullptr; };
  const std::string host = "host" + std::to_string(r);
  try {
    make_topology(world(), n, no_launcher, host);
    ADD_FAILURE() << "a TP group over " << n << " hosts accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("tensor-parallel group 0 (ranks 0-" + std::to_string(n - 1)),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("rank 1 on 'host1' (node 1)"), std::string::npos) << what;
  }
  // TP = 1 on those hosts is fine: one node per rank.
  const Topology t = make_topology(world(), 1, no_launcher, host);
  EXPECT_EQ(t.node, r);
  EXPECT_EQ(t.local_rank, 0);
  EXPECT_EQ(t.local_size, 1);
  EXPECT_EQ(t.dp, n);
}

}  // namespace
}  // namespace dape
