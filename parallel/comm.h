/*
 * Communicator: the collectives the training system needs, over a group of ranks.
 *
 * The model and trainer talk only to this interface; the transport (one process, MPI over host
 * buffers, NCCL over device buffers) hides behind it. Buffers are Tensors on the device the
 * implementation serves. Every rank of the group must make the same calls in the same order.
 *
 * Sub-groups (the tensor-parallel ranks of one model replica, the data-parallel ranks that hold
 * the same shard) are made with split() and are communicators of their own, used independently
 * of their parent.
 *
 * Determinism: a reduction's result depends only on the group's size, the message's length and
 * the values, never on timing, so a run repeats bit for bit; and every rank of the group receives
 * the same bits (data-parallel replicas stay identical). Open MPI picks its reduction algorithm
 * from the group and message size alone. Measured with Open MPI 4.1 (bench/collectives, float32,
 * 4 KiB to 64 MiB, 2, 3 and 4 ranks, shared memory and TCP): every call, every rank and two
 * separate runs gave the same bits, for both forms; the MPI tests check this up to 16 MiB. The
 * blocking and the non-blocking all-reduce run different algorithms, so they can differ from
 * each other in the last bits (they did at 3 ranks up to 64 KiB): a caller that wants identical
 * runs uses the same form with the same message lengths every time.
 *
 * Overlap: start_all_reduce_sum() returns at once with a PendingCollective. MPI progresses a
 * non-blocking collective only while the process is inside an MPI call, so a caller that
 * overlaps communication with computation calls test() on its pending collectives between pieces
 * of work (between the layers of backward, say, with one gradient bucket per collective), and
 * wait() once it needs the result.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/tensor.h"

namespace dape {

// A collective that was started and may still be running. Its buffer must stay alive and
// untouched until it has completed. Destroying an unfinished one waits for it.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  // Progresses the collective; true once it has completed (then the buffer holds the result).
  virtual bool test() = 0;
  // Blocks until the collective has completed.
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;

  // The ranks that pass the same `color` (>= 0), ordered by `key` (ties by rank here), as a group
  // of their own. Collective over this group: every rank calls it. The sub-group holds its own
  // resources and may outlive this communicator's use (not MPI itself: the world owns that).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // x = Σ over ranks of x (in place).
  virtual void all_reduce_sum(const Tensor& x) = 0;
  // The same, started and not waited for (float32 or float64): see PendingCollective.
  virtual std::unique_ptr<PendingCollective> start_all_reduce_sum(const Tensor& x) = 0;
  // x = element-wise max over ranks of x (in place).
  virtual void all_reduce_max(const Tensor& x) = 0;
  // out (size × in.numel(), rank-major) = concatenation of every rank's `in`.
  virtual void all_gather(const Tensor& out, const Tensor& in) = 0;
  // out = this rank's slice (rank-major) of Σ over ranks of `in` (size × out.numel()).
  virtual void reduce_scatter_sum(const Tensor& out, const Tensor& in) = 0;
  // x = root's x.
  virtual void broadcast(const Tensor& x, int root) = 0;
  virtual void barrier() = 0;
  // Host scalars, for losses and norms: Σ over ranks, and the max over ranks.
  virtual double all_reduce_sum(double v) = 0;
  virtual double all_reduce_max(double v) = 0;

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
  std::unique_ptr<Communicator> split(int color, int key) override;
  void all_reduce_sum(const Tensor&) override {}
  std::unique_ptr<PendingCollective> start_all_reduce_sum(const Tensor& x) override;
  void all_reduce_max(const Tensor&) override {}
  void all_gather(const Tensor& out, const Tensor& in) override;
  void reduce_scatter_sum(const Tensor& out, const Tensor& in) override;
  void broadcast(const Tensor&, int) override {}
  void barrier() override {}
  double all_reduce_sum(double v) override { return v; }
  double all_reduce_max(double v) override { return v; }
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
