/*
 * NcclCommunicator: the Communicator over NCCL, on device buffers (the CUDA backend's tensors).
 *
 * Bootstrapped over a host communicator (MPI's world, or a group of one): rank 0 makes the
 * ncclUniqueId and broadcasts it. Host control data (scalars, counts, byte strings, abort)
 * delegate to that host communicator; every tensor collective runs on NCCL, enqueued on the CUDA
 * stream given at construction, on the device that was current then.
 *
 * Failure: NCCL's blocking calls wait forever for a rank that died. This communicator is made
 * non-blocking (config.blocking = 0), and every operation is polled, ncclCommGetAsyncError for
 * NCCL's state and the stream for the device work, until it is done or `timeout_s` has passed;
 * then the communicator is aborted (ncclCommAbort) and a dape::Error names the operation, the
 * rank and the timeout, so the job ends with a message instead of hanging. An aborted
 * communicator refuses any further operation.
 *
 * Streams and overlap: the blocking collectives are enqueued on the stream given at
 * construction (the compute stream of the Ops whose tensors they move) and wait until the device
 * has finished them (that is what the timeout watches), so host and device synchronize at every
 * one. start_all_reduce_sum() is the form that overlaps: it records an event on the compute
 * stream, makes the communicator's own stream wait for it (the collective reads what the compute
 * work enqueued so far produced), enqueues the all-reduce on that own stream and records a
 * completion event after it, then returns. Compute work enqueued afterwards (the rest of backward)
 * runs beside the collective. The PendingCollective completes when the completion event has
 * passed: test() looks, wait() blocks the host until then, polled with the timeout (comm.h's
 * contract: complete means the buffer holds the result). The compute stream never waits for the
 * collective: it goes on with the work already enqueued while the host waits, and anything the
 * host enqueues after wait() returns runs after the collective. The operations of one
 * communicator run in the order they were called: a blocking collective makes the compute stream
 * wait for the started ones first. Pending collectives must be completed or destroyed before
 * their communicator. Collectives of two communicators (the tensor-parallel group's blocking ones
 * and the data-parallel group's started all-reduces) may run at once on the device. NCCL does not
 * promise that both progress then (one's kernel could keep the other's from being scheduled);
 * every rank issues them in the same order, which is what the overlap of other training
 * frameworks rests on too. Not yet run on more than one GPU: the development machine has none.
 *
 * Determinism: NCCL chooses its algorithm and protocol from the group, the message size and the
 * machine's topology, and its ring and tree algorithms reduce each element once and pass the
 * result on, so ranks receive the same bits; NCCL itself promises no run-to-run determinism, and
 * NCCL_ALGO / NCCL_PROTO pin the choice. None of this was measured yet: the development machine
 * has no GPU, and the gpu test runs on one rank only.
 *
 * Compiled only in builds with CUDA (CMake's DAPE_HAVE_CUDA).
 */
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "parallel/launcher_placement.h"

namespace dape {

struct NcclOptions {
  // Seconds an operation may take before the communicator is aborted.
  double timeout_s = 300;
  // The defaults, with DAPE_NCCL_TIMEOUT_S (seconds > 0) when it is set.
  static NcclOptions from_environment(const EnvironmentLookup& env = process_environment());
};

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `host`, which must outlive this communicator. Uses the current CUDA device;
  // `stream` is the compute stream that the blocking collectives are enqueued on and that the
  // started ones follow.
  NcclCommunicator(Communicator& host, cudaStream_t stream, NcclOptions options = {});
  // The same, owning `host`.
  NcclCommunicator(std::unique_ptr<Communicator> host, cudaStream_t stream,
                   NcclOptions options = {});
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }

  // ncclCommSplit, with the host communicator split the same way for the child's control data.
  std::unique_ptr<Communicator> split(int color, int key) override;
  void all_reduce_sum(const Tensor& x) override;
  std::unique_ptr<PendingCollective> start_all_reduce_sum(const Tensor& x) override;
  void all_reduce_max(const Tensor& x) override;
  void all_gather(const Tensor& out, const Tensor& in) override;
  void reduce_scatter_sum(const Tensor& out, const Tensor& in) override;
  void broadcast(const Tensor& x, int root) override;
  // The device work enqueued so far completes, then every rank meets on the host.
  void barrier() override;
  double all_reduce_sum(double v) override { return host_->all_reduce_sum(v); }
  double all_reduce_max(double v) override { return host_->all_reduce_max(v); }
  void all_reduce_sum(int64_t* values, int64_t n) override { host_->all_reduce_sum(values, n); }
  std::vector<std::string> all_gather_bytes(const std::string& mine) override {
    return host_->all_gather_bytes(mine);
  }
  std::string broadcast_bytes(const std::string& bytes, int root) override {
    return host_->broadcast_bytes(bytes, root);
  }
  [[noreturn]] void abort(int code) override;

  // The compute stream, and the communicator's own stream that started collectives run on.
  cudaStream_t stream() const { return stream_; }
  cudaStream_t collective_stream() const { return own_.stream; }
  const NcclOptions& options() const { return options_; }

 private:
  friend class NcclPendingCollective;
  // The communicator's own stream, and an event that orders its work after the compute stream's.
  // Created on the current device.
  struct OwnStream {
    OwnStream();
    ~OwnStream();
    OwnStream(const OwnStream&) = delete;
    OwnStream& operator=(const OwnStream&) = delete;
    cudaStream_t stream = nullptr;
    cudaEvent_t compute_ready = nullptr;  // recorded on the compute stream, waited for by `stream`
    cudaEvent_t started_done = nullptr;   // recorded on `stream`, waited for by the compute stream
  };

  // A child of split(): owns its communicator and its host group.
  NcclCommunicator(ncclComm_t comm, std::unique_ptr<Communicator> host, cudaStream_t stream,
                   NcclOptions options, int device);

  // One look: true when NCCL is not busy and done() holds. Throws (after aborting) on an NCCL
  // error, or once the timeout has passed since `start`. `what` names the operation.
  bool poll_step(const char* what, const std::function<bool()>& done,
                 std::chrono::steady_clock::time_point start);
  // Looks until poll_step() holds.
  void poll_until(const char* what, const std::function<bool()>& done,
                  std::chrono::steady_clock::time_point start);
  // After an NCCL call: throws on failure, waits while NCCL reports it in progress.
  void settle(ncclResult_t rc, const char* what);
  // Waits until `stream` has run everything enqueued on it so far.
  void wait_for_stream(cudaStream_t stream, const char* what);
  // Before a blocking collective: the compute stream waits for the started ones still running.
  void order_after_started();
  void check_usable(const char* what) const;
  // Aborts the communicator and throws a dape::Error: `what` failed because of `why`.
  [[noreturn]] void abort_and_fail(const char* what, const std::string& why);

  ncclComm_t comm_ = nullptr;
  std::unique_ptr<Communicator> owned_host_;
  Communicator* host_ = nullptr;
  cudaStream_t stream_ = nullptr;
  NcclOptions options_;
  int device_ = 0;
  int rank_ = 0, size_ = 1;
  bool aborted_ = false;
  // Declared last: destroyed after the destructor has finalized the NCCL communicator.
  OwnStream own_;
};

}  // namespace dape
