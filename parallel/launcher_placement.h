/*
 * LauncherPlacement: where the launcher put this process on its node, read from the environment
 * variables the launcher sets in every process it starts.
 *
 * MPI itself has no portable notion of "the n-th process on this node", yet a rank needs one to
 * pick its GPU and to know which ranks share its memory. Each launcher exports it under its own
 * names; they are tried in this order, and the first whose variables are set is used:
 *
 *   Open MPI (mpirun, prterun)   OMPI_COMM_WORLD_LOCAL_RANK, OMPI_COMM_WORLD_LOCAL_SIZE
 *   MPICH / Hydra                MPI_LOCALRANKID, MPI_LOCALNRANKS
 *   PMI (Cray PALS, Intel MPI)   PMI_LOCAL_RANK, PMI_LOCAL_SIZE
 *   Slurm (srun, direct launch)  SLURM_LOCALID, SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE
 *                                (e.g. "4(x2),2", indexed by SLURM_NODEID), SLURM_NODEID
 *
 * PMIx launchers (srun --mpi=pmix, prterun) set PMIX_RANK but no local rank of their own: the
 * Slurm or Open MPI variables beside it give that. Variables inherited from somewhere else (a
 * Slurm job step's variables seen by ranks that mpirun started inside the allocation, whose
 * SLURM_LOCALID is the daemon's) are recognized by their global rank or size disagreeing with
 * the communicator's, and skipped. When no launcher says, the topology groups ranks by host name
 * instead (topology.h). Only Slurm numbers the nodes; elsewhere the node index comes from host
 * names.
 *
 * The environment is read through an EnvironmentLookup so that tests can stand in for any
 * launcher.
 */
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace dape {

// The value of an environment variable, or nullptr when it is not set.
using EnvironmentLookup = std::function<const char*(const char* name)>;

// The process's own environment (std::getenv).
EnvironmentLookup process_environment();

struct LauncherPlacement {
  std::string launcher;  // "Open MPI", "MPICH", "PMI", "Slurm": for messages
  int local_rank = 0;    // 0 .. local_size - 1
  int local_size = 1;    // processes of this job on this node
  int node = -1;         // the launcher's node index, -1 when it does not give one
};

// This process's placement by the first launcher whose variables are set and agree with
// `world_rank` and `world_size`; nullopt when none does. A variable that is set but malformed or
// out of range (a local rank not below the local size) is a dape::Error naming it.
std::optional<LauncherPlacement> launcher_placement(const EnvironmentLookup& env, int world_rank,
                                                    int world_size);

}  // namespace dape
