#include "parallel/topology.h"

#include <unistd.h>

#include <climits>
#include <cstdio>
#include <map>

#include "common/check.h"
#include "parallel/device_communicator.h"

namespace dape {

namespace {

// A rank's location as a line of text for all_gather_bytes: host, then the launcher's placement
// when there is one ("launcher|local_rank|local_size|node"). Host names hold no newline.
std::string encode(const RankLocation& where) {
  std::string out = where.host;
  if (where.launcher) {
    const LauncherPlacement& p = *where.launcher;
    out += fmt::format("\n{}|{}|{}|{}", p.launcher, p.local_rank, p.local_size, p.node);
  }
  return out;
}

RankLocation decode(const std::string& text) {
  RankLocation where;
  const size_t newline = text.find('\n');
  where.host = text.substr(0, newline);
  if (newline == std::string::npos) return where;
  const std::string rest = text.substr(newline + 1);
  LauncherPlacement p;
  char name[64] = {};
  const int fields =
      std::sscanf(rest.c_str(), "%63[^|]|%d|%d|%d", name, &p.local_rank, &p.local_size, &p.node);
  DAPE_CHECK(fields == 4, "malformed rank location '{}'", rest);
  p.launcher = name;
  where.launcher = p;
  return where;
}

}  // namespace

std::string Topology::str() const {
  return fmt::format(
      "rank {} of {}: tp {} of {}, dp {} of {}, local {} of {} on node {} (host '{}')", world_rank,
      world_size, tp_rank, tp, dp_rank, dp, local_rank, local_size, node, host);
}

Topology compute_topology(const std::vector<RankLocation>& ranks, int world_rank, int tp) {
  const int n = static_cast<int>(ranks.size());
  DAPE_CHECK(world_rank >= 0 && world_rank < n, "rank {} of {}", world_rank, n);
  if (tp < 1 || n % tp != 0)
    fail(
        "parallel.tp = {}: the tensor-parallel size must be at least 1 and divide the {} ranks "
        "of the job (world = data-parallel × tensor-parallel ranks)",
        tp, n);

  // Nodes: the launcher's numbering when every rank has one, else host names by first appearance.
  bool launcher_nodes = true;
  for (const auto& r : ranks)
    launcher_nodes = launcher_nodes && r.launcher && r.launcher->node >= 0;
  std::vector<int> node(static_cast<size_t>(n));
  std::map<std::string, int> host_index;
  for (int r = 0; r < n; ++r) {
    const auto [it, added] = host_index.emplace(ranks[r].host, static_cast<int>(host_index.size()));
    node[r] = launcher_nodes ? ranks[r].launcher->node : it->second;
  }

  for (int first = 0; first < n; first += tp) {
    bool one_node = true;
    for (int r = first + 1; r < first + tp; ++r) one_node = one_node && node[r] == node[first];
    if (one_node) continue;
    std::string where;
    for (int r = first; r < first + tp && r < first + 16; ++r)
      where += fmt::format("{}rank {} on '{}' (node {})", r == first ? "" : ", ", r, ranks[r].host,
                           node[r]);
    if (tp > 16) where += ", ...";
    fail(
        "tensor-parallel group {} (ranks {}-{}, parallel.tp = {}) spans more than one node: {}. "
        "The ranks of a TP group must sit on one node: the launcher places ranks, so put "
        "consecutive ranks on one node with tp dividing the ranks per node (dape-launch "
        "--procs-per-node P --tp T; Slurm: --ntasks-per-node P --distribution=block), or lower "
        "parallel.tp",
        first / tp, first, first + tp - 1, tp, where);
  }

  Topology t;
  t.world_size = n;
  t.world_rank = world_rank;
  t.tp = tp;
  t.dp = n / tp;
  t.tp_rank = world_rank % tp;
  t.dp_rank = world_rank / tp;
  t.host = ranks[world_rank].host;
  t.node = node[world_rank];
  if (const auto& mine = ranks[world_rank].launcher) {
    t.local_rank = mine->local_rank;
    t.local_size = mine->local_size;
  } else {
    t.local_rank = 0;
    t.local_size = 0;
    for (int r = 0; r < n; ++r) {
      if (node[r] != t.node) continue;
      if (r < world_rank) ++t.local_rank;
      ++t.local_size;
    }
  }
  return t;
}

std::string local_host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

Topology make_topology(Communicator& world, int tp, const EnvironmentLookup& env,
                       const std::string& host) {
  RankLocation mine;
  mine.host = host;
  mine.launcher = launcher_placement(env, world.rank(), world.size());
  std::vector<RankLocation> ranks;
  for (const std::string& text : world.all_gather_bytes(encode(mine)))
    ranks.push_back(decode(text));
  return compute_topology(ranks, world.rank(), tp);
}

Topology make_topology(Communicator& world, int tp) {
  return make_topology(world, tp, process_environment(), local_host_name());
}

ParallelGroups make_parallel_groups(Communicator& world, int tp, void* cuda_stream) {
  ParallelGroups g;
  g.topo = make_topology(world, tp);
  g.tp = world.split(g.topo.dp_rank, g.topo.tp_rank);
  g.dp = world.split(g.topo.tp_rank, g.topo.dp_rank);
  DAPE_CHECK(g.tp->size() == g.topo.tp && g.tp->rank() == g.topo.tp_rank,
             "tensor-parallel group: rank {} of {}, expected {} of {}", g.tp->rank(), g.tp->size(),
             g.topo.tp_rank, g.topo.tp);
  DAPE_CHECK(g.dp->size() == g.topo.dp && g.dp->rank() == g.topo.dp_rank,
             "data-parallel group: rank {} of {}, expected {} of {}", g.dp->rank(), g.dp->size(),
             g.topo.dp_rank, g.topo.dp);
  if (cuda_stream) {
    // Every rank makes the TP group's communicator first, then the DP group's: NCCL's set-up is
    // collective over each group.
    if (g.tp->size() > 1) g.tp = make_device_communicator(std::move(g.tp), cuda_stream);
    if (g.dp->size() > 1) g.dp = make_device_communicator(std::move(g.dp), cuda_stream);
  }
  return g;
}

}  // namespace dape
