// Topology without a launcher: each launcher's environment variables read through a fake
// environment, the grid and local ranks computed from host lists, the errors for a TP size that
// does not divide the world and for a TP group across hosts; and the group of one
// (LocalCommunicator) with the Communicator additions.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "parallel/device_communicator.h"
#include "parallel/launcher_placement.h"
#include "parallel/topology.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

using test::expect_error;

// An environment holding exactly `vars`.
EnvironmentLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(LauncherPlacement, ReadsEachLaunchersVariables) {
  auto p = launcher_placement(fake_env({{"OMPI_COMM_WORLD_RANK", "5"},
                                        {"OMPI_COMM_WORLD_SIZE", "8"},
                                        {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                        {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}}),
                              5, 8);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->launcher, "Open MPI");
  EXPECT_EQ(p->local_rank, 1);
  EXPECT_EQ(p->local_size, 4);
  EXPECT_EQ(p->node, -1);

  p = launcher_placement(
      fake_env({{"PMI_RANK", "2"}, {"MPI_LOCALRANKID", "0"}, {"MPI_LOCALNRANKS", "2"}}), 2, 4);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->launcher, "MPICH");
  EXPECT_EQ(p->local_rank, 0);

  p = launcher_placement(fake_env({{"PMI_LOCAL_RANK", "3"}, {"PMI_LOCAL_SIZE", "4"}}), 7, 8);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->launcher, "PMI");
  EXPECT_EQ(p->local_rank, 3);

  // Slurm (srun --mpi=pmix): PMIX_RANK beside Slurm's variables; the node is Slurm's.
  p = launcher_placement(fake_env({{"PMIX_RANK", "6"},
                                   {"SLURM_PROCID", "6"},
                                   {"SLURM_NTASKS", "8"},
                                   {"SLURM_LOCALID", "2"},
                                   {"SLURM_NODEID", "1"},
                                   {"SLURM_NTASKS_PER_NODE", "4"}}),
                         6, 8);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->launcher, "Slurm");
  EXPECT_EQ(p->local_rank, 2);
  EXPECT_EQ(p->local_size, 4);
  EXPECT_EQ(p->node, 1);
}

TEST(LauncherPlacement, ExpandsSlurmTasksPerNode) {
  // "3(x2),1": nodes of 3, 3 and 1 tasks; the last node's only task.
  auto p = launcher_placement(fake_env({{"SLURM_PROCID", "6"},
                                        {"SLURM_LOCALID", "0"},
                                        {"SLURM_NODEID", "2"},
                                        {"SLURM_TASKS_PER_NODE", "3(x2),1"}}),
                              6, 7);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->local_size, 1);
  p = launcher_placement(
      fake_env(
          {{"SLURM_LOCALID", "1"}, {"SLURM_NODEID", "1"}, {"SLURM_TASKS_PER_NODE", "3(x2),1"}}),
      4, 7);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->local_size, 3);
  expect_error(
      [] {
        launcher_placement(
            fake_env(
                {{"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "0"}, {"SLURM_TASKS_PER_NODE", "2(x"}}),
            0, 2);
      },
      {"SLURM_TASKS_PER_NODE='2(x'", "N(xM)"});
  expect_error(
      [] {
        launcher_placement(
            fake_env(
                {{"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "3"}, {"SLURM_TASKS_PER_NODE", "2(x2)"}}),
            0, 4);
      },
      {"SLURM_NODEID=3", "outside the 2 nodes"});
}

TEST(LauncherPlacement, SkipsAnotherJobsVariablesAndNeedsBothValues) {
  // mpirun inside a Slurm allocation: the ranks inherit the daemon's Slurm variables (rank 0 of
  // 2 daemons), which disagree with the world; Open MPI's own come first anyway.
  const auto env = fake_env({{"SLURM_PROCID", "0"},
                             {"SLURM_NTASKS", "2"},
                             {"SLURM_LOCALID", "0"},
                             {"SLURM_NTASKS_PER_NODE", "1"}});
  EXPECT_FALSE(launcher_placement(env, 3, 8));
  EXPECT_FALSE(launcher_placement(fake_env({{"OMPI_COMM_WORLD_LOCAL_RANK", "0"}}), 0, 2));
  EXPECT_FALSE(launcher_placement(fake_env({}), 0, 1));
}

TEST(LauncherPlacement, RefusesMalformedValuesNamingTheVariable) {
  expect_error(
      [] {
        launcher_placement(
            fake_env({{"OMPI_COMM_WORLD_LOCAL_RANK", "one"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}),
            0, 2);
      },
      {"OMPI_COMM_WORLD_LOCAL_RANK='one'", "Open MPI", "not a non-negative integer"});
  expect_error(
      [] {
        launcher_placement(
            fake_env({{"OMPI_COMM_WORLD_LOCAL_RANK", "2"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}), 0,
            4);
      },
      {"OMPI_COMM_WORLD_LOCAL_RANK=2", "OMPI_COMM_WORLD_LOCAL_SIZE=2", "below the local size"});
  expect_error(
      [] {
        launcher_placement(fake_env({{"MPI_LOCALRANKID", "-1"}, {"MPI_LOCALNRANKS", "2"}}), 0, 2);
      },
      {"MPI_LOCALRANKID='-1'"});
}

// Ranks on hosts named by `hosts`, without launcher variables.
std::vector<RankLocation> on_hosts(const std::vector<std::string>& hosts) {
  std::vector<RankLocation> ranks;
  for (const auto& h : hosts) ranks.push_back({h, std::nullopt});
  return ranks;
}

TEST(Topology, GridAndLocalRanksFromHostNames) {
  // 8 ranks, 4 per host, TP 2: consecutive pairs are TP groups.
  const auto ranks = on_hosts({"a", "a", "a", "a", "b", "b", "b", "b"});
  for (int r = 0; r < 8; ++r) {
    const Topology t = compute_topology(ranks, r, 2);
    EXPECT_EQ(t.world_size, 8);
    EXPECT_EQ(t.tp, 2);
    EXPECT_EQ(t.dp, 4);
    EXPECT_EQ(t.tp_rank, r % 2);
    EXPECT_EQ(t.dp_rank, r / 2);
    EXPECT_EQ(t.node, r / 4);
    EXPECT_EQ(t.local_rank, r % 4);
    EXPECT_EQ(t.local_size, 4);
    EXPECT_EQ(t.host, r < 4 ? "a" : "b");
  }
  EXPECT_EQ(compute_topology(ranks, 5, 4).str(),
            "rank 5 of 8: tp 1 of 4, dp 1 of 2, local 1 of 4 on node 1 (host 'b')");
  // Nodes are numbered by first appearance; a host's ranks need not be consecutive with TP 1.
  const auto mixed = on_hosts({"z", "y", "z", "y", "x"});
  const int want_node[] = {0, 1, 0, 1, 2}, want_local[] = {0, 0, 1, 1, 0},
            want_size[] = {2, 2, 2, 2, 1};
  for (int r = 0; r < 5; ++r) {
    const Topology t = compute_topology(mixed, r, 1);
    EXPECT_EQ(t.node, want_node[r]) << r;
    EXPECT_EQ(t.local_rank, want_local[r]) << r;
    EXPECT_EQ(t.local_size, want_size[r]) << r;
  }
}

TEST(Topology, LauncherPlacementWinsOverHostNames) {
  // Slurm numbers the nodes and gives local ranks; the host names are not consulted for either.
  std::vector<RankLocation> ranks;
  for (int r = 0; r < 4; ++r)
    ranks.push_back({"same-name", LauncherPlacement{"Slurm", r % 2, 2, r / 2}});
  const Topology t = compute_topology(ranks, 3, 2);
  EXPECT_EQ(t.node, 1);
  EXPECT_EQ(t.local_rank, 1);
  EXPECT_EQ(t.local_size, 2);
  // With Slurm's nodes, a TP group over nodes 0 and 1 is refused although the names agree.
  expect_error([&] { compute_topology(ranks, 0, 4); },
               {"rank 1 on 'same-name' (node 0), rank 2 on 'same-name' (node 1)"});
}

TEST(Topology, RefusesBadTensorParallelSizes) {
  const auto ranks = on_hosts({"a", "a", "a", "a", "a", "a"});
  expect_error([&] { compute_topology(ranks, 0, 4); }, {"parallel.tp = 4", "divide the 6 ranks"});
  expect_error([&] { compute_topology(ranks, 0, 0); }, {"parallel.tp = 0", "at least 1"});
  EXPECT_EQ(compute_topology(ranks, 5, 3).dp_rank, 1);
}

TEST(Topology, RefusesTensorParallelGroupsAcrossHostsNamingRanksAndHosts) {
  // 3 ranks per host with TP 2: group 1 (ranks 2, 3) straddles hosts a and b.
  const auto ranks = on_hosts({"a", "a", "a", "b", "b", "b"});
  const std::string msg =
      expect_error([&] { compute_topology(ranks, 0, 2); },
                   {"tensor-parallel group 1 (ranks 2-3, parallel.tp = 2) spans more than one node",
                    "rank 2 on 'a' (node 0), rank 3 on 'b' (node 1)", "must sit on one node",
                    "dape-launch --procs-per-node P --tp T"});
  // Every rank sees the same refusal, not only those of the broken group.
  EXPECT_EQ(test::error_of([&] { compute_topology(ranks, 5, 2); }), msg);
  EXPECT_EQ(compute_topology(ranks, 4, 3).tp_rank, 1);  // TP 3 fits
}

TEST(LocalCommunicator, AdditionsOverOneRank) {
  LocalCommunicator one;
  auto sub = one.split(3, 7);
  EXPECT_EQ(sub->size(), 1);
  EXPECT_EQ(sub->rank(), 0);
  EXPECT_EQ(sub->name(), "local");
  std::vector<float> x = {1.5f, -2.0f};
  const Tensor t(x.data(), DType::f32, Shape{2});
  auto pending = one.start_all_reduce_sum(t);
  EXPECT_TRUE(pending->test());
  pending->wait();
  one.all_reduce_max(t);
  EXPECT_EQ(x, (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(one.all_reduce_max(-4.25), -4.25);
  ParallelGroups g = make_parallel_groups(one, 1);
  EXPECT_EQ(g.tp->size(), 1);
  EXPECT_EQ(g.dp->size(), 1);
  EXPECT_EQ(g.topo.world_size, 1);
  expect_error([&] { make_parallel_groups(one, 2); }, {"divide the 1 ranks"});
}

// With tensors on a CUDA device, groups of more than one rank run over NCCL; a group of one keeps
// its host communicator, so a single-GPU run never starts NCCL (nothing here touches the stream).
TEST(ParallelGroups, GroupsOfOneKeepTheHostCommunicatorOnADevice) {
  LocalCommunicator one;
  int not_a_stream = 0;
  ParallelGroups g = make_parallel_groups(one, 1, &not_a_stream);
  EXPECT_EQ(g.tp->size(), 1);
  EXPECT_EQ(g.dp->size(), 1);
  EXPECT_EQ(g.tp->name(), "local");
  EXPECT_EQ(g.dp->name(), "local");
}

TEST(DeviceCommunicator, NeedsABuildWithCuda) {
#if defined(DAPE_WITH_CUDA)
  GTEST_SKIP() << "skipped: this build has CUDA; tests/gpu/nccl_communicator_test.cpp covers it";
#else
  int not_a_stream = 0;
  expect_error(
      [&] { make_device_communicator(std::make_unique<LocalCommunicator>(), &not_a_stream); },
      {"need NCCL", "no CUDA backend"});
#endif
}

}  // namespace
}  // namespace dape
