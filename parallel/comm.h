/*
 * Communicator: the collectives the training system needs, over a group of ranks.
 *
 * The model and trainer talk only to this interface; the transport (one process, MPI over host
 * buffers, NCCL over device buffers) hides behind it. Buffers are Tensors on the device the
 * implementation serves. Every rank of the group must make the same calls in the same order.
 * Reductions are sums; results are deterministic for a fixed group size.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/tensor.h"

namespace dape {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;

  // x = Σ over ranks of x (in place).
  virtual void all_reduce_sum(const Tensor& x) = 0;
  // out (size × in.numel(), rank-major) = concatenation of every rank's `in`.
  virtual void all_gather(const Tensor& out, const Tensor& in) = 0;
  // out = this rank's slice (rank-major) of Σ over ranks of `in` (size × out.numel()).
  virtual void reduce_scatter_sum(const Tensor& out, const Tensor& in) = 0;
  // x = root's x.
  virtual void broadcast(const Tensor& x, int root) = 0;
  virtual void barrier() = 0;
  // Host scalars, for losses and norms: Σ over ranks.
  virtual double all_reduce_sum(double v) = 0;

  // Host-side control data (counts, file lists, small messages), not tensors.
  // Element-wise Σ over ranks of n int64 values, in place.
  virtual void all_reduce_sum(int64_t* values, int64_t n) = 0;
  // Every rank's bytes, indexed by rank.
  virtual std::vector<std::string> all_gather_bytes(const std::string& mine) = 0;
  // root's bytes, on every rank.
  virtual std::string broadcast_bytes(const std::string& bytes, int root) = 0;
  // Ends every process of the group with `code` (after this rank's error was printed): no rank
  // is left waiting in a collective for one that has failed.
  [[noreturn]] virtual void abort(int code) = 0;
};

// The group of one: every collective is the identity (or a copy).
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "local"; }
  void all_reduce_sum(const Tensor&) override {}
  void all_gather(const Tensor& out, const Tensor& in) override;
  void reduce_scatter_sum(const Tensor& out, const Tensor& in) override;
  void broadcast(const Tensor&, int) override {}
  void barrier() override {}
  double all_reduce_sum(double v) override { return v; }
  void all_reduce_sum(int64_t*, int64_t) override {}
  std::vector<std::string> all_gather_bytes(const std::string& mine) override { return {mine}; }
  std::string broadcast_bytes(const std::string& bytes, int) override { return bytes; }
  [[noreturn]] void abort(int code) override;
};

// The group of every process of this job: MPI's world when the process was started by an MPI
// launcher (mpirun, srun with PMIx: detected from its environment variables), else the group of
// one. MPI is initialized here, on first use, and finalized when the returned object is
// destroyed.
std::unique_ptr<Communicator> make_world_communicator();

}  // namespace dape
