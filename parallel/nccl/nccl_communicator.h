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
 * Trade-off: the blocking collectives wait until the device has finished them (that is what the
 * timeout watches), so host and device synchronize at every one; start_all_reduce_sum() is the
 * form that overlaps: it returns once NCCL has enqueued the work, and its PendingCollective
 * completes when an event recorded after it on the stream has passed. Pending collectives must be
 * completed or destroyed before their communicator.
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
  // Collective over `host`, which must outlive this communicator. Uses the current CUDA device.
  NcclCommunicator(Communicator& host, cudaStream_t stream, NcclOptions options = {});
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

  cudaStream_t stream() const { return stream_; }
  const NcclOptions& options() const { return options_; }

 private:
  friend class NcclPendingCollective;
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
  // Waits until the stream has run everything enqueued on it so far.
  void wait_for_stream(const char* what);
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
};

}  // namespace dape
