// The data-parallel × tensor-parallel grid over the job's ranks (run under mpirun with 1, 2 and 3
// ranks, and across two hosts by the multi-host test): every TP size that divides the world, the
// sub-communicators' members checked through sums of world ranks, Open MPI's local ranks against
// the gathered host names, TP groups over two hosts refused, and a TP group refused on every rank
// when its ranks report different hosts.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/check.h"
#include "parallel/topology.h"
#include "tests/mpi/mpi_test_util.h"

namespace dape {
namespace {

using test::world;

TEST(Topology, GroupsForEveryTensorParallelSizeThatDividesTheWorld) {
  const int r = world().rank(), n = world().size();
  // Where every rank runs, gathered here independently of the topology code: one host under
  // plain mpirun, several in the multi-host test (tests/e2e/multihost_netns.sh).
  const auto hosts = world().all_gather_bytes(local_host_name());
  std::vector<std::string> node_hosts;  // by first appearance
  for (const auto& h : hosts)
    if (std::find(node_hosts.begin(), node_hosts.end(), h) == node_hosts.end())
      node_hosts.push_back(h);
  const int node = static_cast<int>(std::find(node_hosts.begin(), node_hosts.end(), hosts[r]) -
                                    node_hosts.begin());
  const int local_rank = static_cast<int>(std::count(hosts.begin(), hosts.begin() + r, hosts[r]));
  const int local_size = static_cast<int>(std::count(hosts.begin(), hosts.end(), hosts[r]));
  for (int tp = 1; tp <= n; ++tp) {
    if (n % tp != 0) continue;
    bool spans_hosts = false;
    for (int k = 0; k < n; ++k) spans_hosts = spans_hosts || hosts[k] != hosts[k - k % tp];
    if (spans_hosts) {
      try {
        make_parallel_groups(world(), tp);
        ADD_FAILURE() << "tp " << tp << " accepted over hosts";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("spans more than one node"), std::string::npos)
            << e.what();
      }
      continue;
    }
    ParallelGroups g = make_parallel_groups(world(), tp);
    const Topology& t = g.topo;
    EXPECT_EQ(t.world_size, n);
    EXPECT_EQ(t.world_rank, r);
    EXPECT_EQ(t.tp, tp);
    EXPECT_EQ(t.dp, n / tp);
    EXPECT_EQ(t.tp_rank, r % tp);
    EXPECT_EQ(t.dp_rank, r / tp);
    // Open MPI's local ranks (from its environment) agree with the hosts gathered here.
    EXPECT_EQ(t.local_rank, local_rank) << t.str();
    EXPECT_EQ(t.local_size, local_size) << t.str();
    EXPECT_EQ(t.node, node) << t.str();
    EXPECT_EQ(t.host, hosts[r]);
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
