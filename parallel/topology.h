/*
 * Topology: the job's ranks as a grid of data-parallel replicas × tensor-parallel ranks
 * (DESIGN.md §3), and where each rank sits on the machines.
 *
 * World = DP × TP. The TP ranks of one replica are consecutive world ranks (tp_rank = rank % tp,
 * dp_rank = rank / tp): tensor parallelism exchanges activations at every layer and needs the
 * fastest links, and launchers place consecutive ranks on one node (dape-launch maps P ranks per
 * node, Slurm's block distribution likewise), so a TP group that divides the ranks per node stays
 * on one node. A TP group that spans two hosts would run, slowly; it is refused instead, with the
 * ranks and hosts that broke it.
 *
 * Local rank and size (which GPU is this rank's, which ranks share its memory) come from the
 * launcher's environment (launcher_placement.h); without one, from grouping the ranks by host
 * name, gathered once from every rank. The node index is Slurm's when it gives one, else the order
 * in which host names first appear by rank. Nodes are told apart by host name, so every node of a
 * job must have its own.
 *
 * ParallelGroups adds the two sub-communicators a rank trains with: its TP group (the ranks of
 * its replica) and its DP group (the ranks that hold the same TP shard in every replica). When the
 * model's tensors live on a CUDA device, a group of more than one rank runs over NCCL
 * (parallel/device_communicator.h), bootstrapped over its host group; a group of one keeps the
 * host communicator, whose tensor collectives nothing calls (the model, the optimizer and the
 * gradient sync skip them over one rank), so a run on one GPU never starts NCCL.
 */
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "parallel/launcher_placement.h"

namespace dape {

struct Topology {
  int world_size = 1, world_rank = 0;
  int tp = 1, dp = 1;            // group sizes: world_size = tp · dp
  int tp_rank = 0, dp_rank = 0;  // rank % tp, rank / tp
  int local_rank = 0, local_size = 1;
  int node = 0;
  std::string host;

  // "rank 3 of 8: tp 1 of 2, dp 1 of 4, local 3 of 4 on node 0 (host 'a')"
  std::string str() const;
};

// What one rank tells the others about where it runs.
struct RankLocation {
  std::string host;
  std::optional<LauncherPlacement> launcher;
};

// The topology of `world_rank` given every rank's location (indexed by rank) and the TP size:
// the pure computation behind make_topology. dape::Error when tp does not divide the ranks, or
// when a TP group spans two nodes.
Topology compute_topology(const std::vector<RankLocation>& ranks, int world_rank, int tp);

// Collective over `world`: gathers every rank's host name and launcher placement, then
// compute_topology. The overload takes the environment and host name to use (for tests).
Topology make_topology(Communicator& world, int tp);
Topology make_topology(Communicator& world, int tp, const EnvironmentLookup& env,
                       const std::string& host);

// This machine's host name.
std::string local_host_name();

struct ParallelGroups {
  Topology topo;
  std::unique_ptr<Communicator> tp;  // the tp ranks of this replica, ordered by tp_rank
  std::unique_ptr<Communicator> dp;  // the dp ranks with this tp_rank, ordered by dp_rank
};

// Collective over `world`: the topology and its two sub-communicators (Communicator::split).
// `cuda_stream`: nullptr for tensors in host memory; else the compute stream (a cudaStream_t) of
// the CUDA Ops whose tensors the groups move, and groups of more than one rank run over NCCL.
ParallelGroups make_parallel_groups(Communicator& world, int tp, void* cuda_stream = nullptr);

}  // namespace dape
