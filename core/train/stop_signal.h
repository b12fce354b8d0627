/*
 * StopSignal: SIGTERM and SIGUSR1 (what Slurm and other schedulers send ahead of preemption) ask
 * a training run to stop cleanly: finish the current step, save a checkpoint, exit 0.
 *
 * The handler only sets a flag (async-signal-safe); the trainer reads it at the end of every step
 * and the ranks agree through a max-reduction of it, so every rank saves at the same step even
 * when the signal reaches them at different times, or only one of them. The previous handlers
 * come back when the object is destroyed. One object at a time per process.
 *
 * Under Open MPI 4.1's mpirun: SIGUSR1 (and SIGUSR2) sent to mpirun are forwarded to every rank
 * and the job goes on, so a run stops with a checkpoint and mpirun exits 0. SIGTERM sent to
 * mpirun makes it end the job: it waits odls_base_sigkill_timeout seconds (default 1), sends
 * SIGTERM to the ranks, waits as long again, then SIGKILLs them, and exits 1 whatever the ranks
 * did. Set OMPI_MCA_odls_base_sigkill_timeout to longer than a step plus a save for the ranks'
 * checkpoint to complete before the kill; dape-launch turns a SIGTERM into SIGUSR1 for mpirun.
 */
#pragma once

namespace dape {

class StopSignal {
 public:
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  // Whether SIGTERM or SIGUSR1 arrived since construction.
  bool requested() const;
  // The signal that arrived last (0: none).
  int signal() const;
};

}  // namespace dape
