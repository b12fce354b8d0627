#include "parallel/launcher_placement.h"

#include <charconv>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "common/check.h"

namespace dape {

namespace {

// The launcher variables of one launcher. A null name: the launcher does not set it.
struct LauncherVariables {
  const char* launcher;
  const char* rank;        // global rank, to recognize variables that belong to another job
  const char* size;        // global size, likewise
  const char* local_rank;  // required
  const char* local_size;  // null: computed (Slurm)
  const char* node;
};

constexpr LauncherVariables kLaunchers[] = {
    {"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE", nullptr},
    {"MPICH", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", nullptr},
    {"PMI", "PMI_RANK", "PMI_SIZE", "PMI_LOCAL_RANK", "PMI_LOCAL_SIZE", nullptr},
    {"Slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", nullptr, "SLURM_NODEID"},
};

// A non-negative decimal integer, the whole text.
std::optional<int> parse_count(std::string_view text) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || value < 0)
    return std::nullopt;
  return value;
}

int count_variable(const char* name, const char* value, const char* launcher) {
  const auto n = parse_count(value);
  if (!n)
    fail("environment variable {}='{}' (set by {}) is not a non-negative integer", name, value,
         launcher);
  return *n;
}

// Slurm's per-node task counts, "4(x2),2" = nodes of 4, 4 and 2 tasks.
std::vector<int> slurm_tasks_per_node(const char* value) {
  std::vector<int> counts;
  std::string_view rest(value);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    int repeat = 1;
    const size_t paren = item.find("(x");
    if (paren != std::string_view::npos) {
      const auto r = item.back() == ')'
                         ? parse_count(item.substr(paren + 2, item.size() - paren - 3))
                         : std::nullopt;
      if (!r || *r == 0)
        fail(
            "environment variable SLURM_TASKS_PER_NODE='{}' (set by Slurm): '{}' is not of the "
            "form N or N(xM)",
            value, item);
      repeat = *r;
      item = item.substr(0, paren);
    }
    const auto n = parse_count(item);
    if (!n)
      fail(
          "environment variable SLURM_TASKS_PER_NODE='{}' (set by Slurm): '{}' is not of the "
          "form N or N(xM)",
          value, item);
    counts.insert(counts.end(), static_cast<size_t>(repeat), *n);
  }
  return counts;
}

// Slurm's tasks on this node: SLURM_NTASKS_PER_NODE (only set with --ntasks-per-node) or this
// node's entry of SLURM_TASKS_PER_NODE; -1 when that cannot be told.
int slurm_local_size(const EnvironmentLookup& env, int node) {
  if (const char* v = env("SLURM_NTASKS_PER_NODE"))
    return count_variable("SLURM_NTASKS_PER_NODE", v, "Slurm");
  const char* v = env("SLURM_TASKS_PER_NODE");
  if (!v) return -1;
  const auto counts = slurm_tasks_per_node(v);
  if (node < 0) return counts.size() == 1 ? counts[0] : -1;  // which node's entry is unknown
  if (node >= static_cast<int>(counts.size()))
    fail(
        "environment variable SLURM_NODEID={} (set by Slurm) is outside the {} nodes of "
        "SLURM_TASKS_PER_NODE='{}'",
        node, counts.size(), v);
  return counts[static_cast<size_t>(node)];
}

}  // namespace

EnvironmentLookup process_environment() {
  return [](const char* name) -> const char* { return std::getenv(name); };
}

std::optional<LauncherPlacement> launcher_placement(const EnvironmentLookup& env, int world_rank,
                                                    int world_size) {
  for (const LauncherVariables& l : kLaunchers) {
    const char* local_rank = env(l.local_rank);
    if (!local_rank) continue;
    // Another job's variables (inherited through a launcher of a different kind): skip them.
    const char* rank = env(l.rank);
    const char* size = env(l.size);
    if (rank && count_variable(l.rank, rank, l.launcher) != world_rank) continue;
    if (size && count_variable(l.size, size, l.launcher) != world_size) continue;

    LauncherPlacement p;
    p.launcher = l.launcher;
    p.local_rank = count_variable(l.local_rank, local_rank, l.launcher);
    if (l.node) {
      const char* node = env(l.node);
      if (node) p.node = count_variable(l.node, node, l.launcher);
    }
    if (l.local_size) {
      const char* local_size = env(l.local_size);
      if (!local_size) continue;
      p.local_size = count_variable(l.local_size, local_size, l.launcher);
    } else {
      p.local_size = slurm_local_size(env, p.node);
      if (p.local_size < 0) continue;
    }
    if (p.local_rank >= p.local_size || p.local_size > world_size)
      fail(
          "environment variables {}={} and {}={} (set by {}): the local rank must be below the "
          "local size, which cannot exceed the {} ranks of the job",
          l.local_rank, p.local_rank, l.local_size ? l.local_size : "tasks per node", p.local_size,
          l.launcher, world_size);
    return p;
  }
  return std::nullopt;
}

}  // namespace dape
