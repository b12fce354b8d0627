/*
 * GradientSync: the data-parallel sum of the gradients, in buckets sent while backward runs.
 *
 * The flat gradient buffer (ParamStore) is cut into buckets of about `bucket_mb` MB, in buffer
 * order. The model reports each gradient tensor as soon as it is final (Decoder's gradient hook);
 * a bucket's all-reduce is started (non-blocking) as soon as every element of it has been
 * reported, and backward goes on with earlier layers while it runs. MPI progresses a
 * non-blocking collective only inside MPI calls, so every report also tests the pending ones. On
 * GPUs the data-parallel group is an NCCL communicator: each bucket's all-reduce runs on the
 * communicator's own stream after the gradient kernels enqueued before it, beside the rest of
 * backward (parallel/nccl/nccl_communicator.h).
 * Because the store lays tensors out in the order backward finishes them, buckets fill one after
 * another from the start of the buffer. finish() sends what is left (tensors never reported, e.g. a
 * bias of an unused scheme) and waits for everything.
 *
 * Data-parallel gradients are sums: the trainer weights each token's loss by 1 / (tokens of the
 * global batch), so the sum over ranks is the gradient of the global mean loss. With gradient
 * accumulation, only the last micro-step reports (the earlier ones just accumulate locally).
 *
 * Figures: seconds spent starting and testing collectives during backward, and waiting for them
 * in finish() (the exposed part), per step, for the compute/communication split.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/model/param_store.h"
#include "parallel/comm.h"

namespace dape {

class GradientSync {
 public:
  // bucket_mb <= 0: one bucket, the whole buffer, sent by finish().
  GradientSync(Communicator& dp, const ParamStore& params, double bucket_mb);

  int buckets() const { return static_cast<int>(buckets_.size()); }
  // A new backward: nothing reported yet.
  void begin();
  // `grad` (a view into the store's gradient buffer) is final for this step.
  void mark_ready(const Tensor& grad);
  // Sends every bucket not yet sent and waits until all are summed.
  void finish();

  double seconds_in_backward() const { return seconds_in_backward_; }
  double seconds_in_finish() const { return seconds_in_finish_; }

 private:
  struct Bucket {
    int64_t begin = 0, end = 0;
    int64_t remaining = 0;  // elements not yet reported
    bool sent = false;
    std::unique_ptr<PendingCollective> pending;
  };
  void send(Bucket& b);
  void progress();

  Communicator& dp_;
  const ParamStore& params_;
  std::vector<Bucket> buckets_;
  double seconds_in_backward_ = 0, seconds_in_finish_ = 0;
};

}  // namespace dape
