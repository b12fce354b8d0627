/*
 * AdamW over a ParamStore: moments m and v in flat buffers shaped like the parameters, and one
 * kernel call per run of neighbouring tensors of one optimizer group (weight-decayed or not;
 * ParamStore::runs). After the update each tensor's clamp (Kerple's p and a) is applied.
 *
 * ZeRO-1 (DESIGN.md §3): given a data-parallel group of n ranks, the flat buffer is cut into n
 * contiguous shards of S = ⌈P/n⌉ elements; rank r keeps the moments of shard r only (memory
 * 2·P/n instead of 2·P), updates only those parameters from the (already all-reduced, identical)
 * gradients, and the ranks then all-gather the updated shards so every replica holds all the
 * parameters again. The arithmetic per element is the one of the unsharded optimizer, so results
 * match it exactly. Checkpoints write and read each rank's shard directly (m_shard(), v_shard());
 * gather_moments() assembles full moments on every rank and scatter_moments() keeps this rank's
 * shard of full moments that were loaded into m()/v().
 *
 * Gradient clipping by global L2 norm lives here too: one sum of squares over the whole gradient
 * buffer, accumulated in double in a fixed order.
 */
#pragma once

#include <cstdint>

#include "core/model/param_store.h"
#include "parallel/comm.h"

namespace dape {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class AdamW {
 public:
  // `shard_over`: the data-parallel group to shard the moments over (ZeRO-1), or nullptr.
  AdamW(Ops& ops, ParamStore& params, const AdamWConfig& cfg, Communicator* shard_over = nullptr);
  // Applies one update with learning rate lr; `step` is the 1-based update count (for bias
  // correction). Sharded: a collective over the group (the all-gather of the parameters).
  void step(double lr, int64_t step);

  bool sharded() const { return shard_over_ != nullptr; }
  // [begin, end) of the flat buffer whose moments this rank keeps.
  int64_t shard_begin() const { return shard_begin_; }
  int64_t shard_end() const { return shard_end_; }
  // The moments this rank keeps: elements [shard_begin(), shard_end()) of the flat buffer
  // (all of it when unsharded). Checkpoints read and write these directly.
  Tensor m_shard() const { return m_.tensor().slice(0, {shard_end_ - shard_begin_}); }
  Tensor v_shard() const { return v_.tensor().slice(0, {shard_end_ - shard_begin_}); }

  // Full-size moments, shaped like the parameters. Unsharded: the moments themselves. Sharded:
  // a full-size copy that exists only between gather_moments() (or prepare_full_moments()) and
  // release_full_moments() / scatter_moments().
  const Tensor& m() const;
  const Tensor& v() const;
  // Sharded only. Collective: every rank gets the full moments in m()/v().
  void gather_moments();
  // Sharded only. Makes m()/v() full-size buffers to load into; then scatter_moments() keeps
  // this rank's shard of them and frees them.
  void prepare_full_moments();
  void scatter_moments();
  void release_full_moments();

 private:
  Ops& ops_;
  ParamStore& params_;
  AdamWConfig cfg_;
  Communicator* shard_over_;
  int64_t shard_begin_ = 0, shard_end_ = 0, shard_size_ = 0;  // shard_size_: S, the padded size
  DeviceBuffer m_, v_;
  DeviceBuffer m_full_, v_full_;
  DeviceBuffer gather_in_, gather_out_;  // [S] and [n·S]: the all-gather's staging
};

// The global L2 norm of `grads`; when max_norm > 0 and the norm exceeds it, grads are scaled by
// max_norm / norm. Returns the norm before clipping.
double clip_grad_norm(Ops& ops, const Tensor& grads, double max_norm);
// The same for a model cut over the tensor-parallel group `tp`: the norm of the whole model's
// gradient, with the squares of split tensors' pieces summed over the group and those of
// replicated tensors (the same on every rank) counted once.
double clip_grad_norm(Ops& ops, const ParamStore& params, Communicator& tp, double max_norm);

}  // namespace dape
