/*
 * MpiCommunicator: the Communicator over MPI, on host buffers (the CPU backend's tensors).
 *
 * Tensor collectives map to MPI_Allreduce / MPI_Allgather / MPI_Reduce_scatter_block /
 * MPI_Bcast on float32 or float64 data, the non-blocking all-reduce to MPI_Iallreduce in place;
 * control data (counts, byte strings) to the matching integer and byte collectives. A
 * sub-communicator (data- or tensor-parallel group) is a MpiCommunicator over MPI_Comm_split of
 * its parent: it owns that MPI_Comm and frees it when destroyed, while MPI itself stays up until
 * the world communicator goes.
 *
 * Results of reductions are deterministic for a fixed group size and message size (Open MPI
 * picks its algorithm from those), which the training system's bitwise reproducibility needs;
 * see comm.h for what was measured.
 */
#pragma once

#include <mpi.h>

#include "parallel/comm.h"

namespace dape {

class MpiCommunicator final : public Communicator {
 public:
  // Wraps `comm`; takes ownership (MPI_Comm_free on destruction) unless it is MPI_COMM_WORLD.
  explicit MpiCommunicator(MPI_Comm comm);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }

  std::unique_ptr<Communicator> split(int color, int key) override;
  void all_reduce_sum(const Tensor& x) override;
  std::unique_ptr<PendingCollective> start_all_reduce_sum(const Tensor& x) override;
  void all_reduce_max(const Tensor& x) override;
  void all_gather(const Tensor& out, const Tensor& in) override;
  void reduce_scatter_sum(const Tensor& out, const Tensor& in) override;
  void broadcast(const Tensor& x, int root) override;
  void barrier() override;
  double all_reduce_sum(double v) override;
  double all_reduce_max(double v) override;
  void all_reduce_sum(int64_t* values, int64_t n) override;
  std::vector<std::string> all_gather_bytes(const std::string& mine) override;
  std::string broadcast_bytes(const std::string& bytes, int root) override;
  [[noreturn]] void abort(int code) override;

  MPI_Comm comm() const { return comm_; }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

// Initializes MPI if the process was started by an MPI launcher and MPI is not up yet; returns
// whether MPI is in use. Finalization is owned by the first world communicator made.
bool launched_by_mpi();

}  // namespace dape
