/*
 * Trainer: the training loop of one run, from a resolved config to checkpoints, metrics and an
 * evaluation table.
 *
 * One optimizer step = global_batch samples of seq_len + 1 tokens, taken in the seeded global
 * order (DESIGN.md §3), processed as micro-batches whose gradients accumulate, then: global-norm
 * clipping, the warm-up + cosine learning rate, AdamW, Kerple's clamp. Each token's loss is
 * weighted 1 / (global_batch · seq_len), so the gradient is that of the mean loss whatever the
 * micro-batching.
 *
 * Data parallelism: under mpirun each of the D ranks holds a replica, takes its contiguous slice
 * of every global batch (global_batch / D samples, in the same global order, so any D sees the
 * same data), and the gradients are summed over the ranks in buckets during the last
 * micro-step's backward (gradient_sync.h). With parallel.zero_stage 1 the AdamW moments are
 * sharded over the ranks (adamw_optimizer.h). Rank 0 alone writes the run directory's files,
 * draws progress and evaluates; every rank writes its own shard of a checkpoint (checkpoint.h).
 * SIGTERM or SIGUSR1 stop the run after the current step with a checkpoint (stop_signal.h).
 *
 * Reproducibility: parameter init depends only on the seed and tensor names, the data order only
 * on the seed and the training split, every kernel reduces in a fixed order, and a checkpoint
 * holds everything else (weights, moments, step, data position), so an interrupted and resumed
 * run produces bitwise the same losses as an uninterrupted one on the same machine and thread
 * count.
 *
 * The run directory receives: config.pbtxt (the resolved config), metrics.jsonl (one line per
 * step), eval.jsonl (one line per evaluation), eval_final.json, and checkpoints/.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/train/evaluator.h"
#include "kernels/ops.h"
#include "parallel/comm.h"

namespace dape {

struct TrainOptions {
  // auto: resume from the newest complete checkpoint in the run directory if there is one;
  // none: start fresh (refuses a run directory that already holds checkpoints);
  // anything else: a checkpoint (step or run directory) to resume from.
  std::string resume = "auto";
  // Stop (with a checkpoint) once this many steps are done in total, before train.steps;
  // 0: run to train.steps. The schedule still spans train.steps.
  int64_t stop_at_step = 0;
  // A safetensors file written by `dape export` to take the initial weights from (when not
  // resuming); "": the seeded initialization.
  std::string init_from;
  bool progress = true;
  // SIGTERM or SIGUSR1 stop the run after the current step with a checkpoint
  // (core/train/stop_signal.h).
  bool stop_on_signal = true;
  // The processes of the job (data-parallel ranks); nullptr: this process alone.
  Communicator* world = nullptr;
};

struct TrainSummary {
  int64_t first_step = 0;  // the step training started (or resumed) at
  int64_t last_step = 0;   // steps completed when it returned
  double final_loss = 0;
  double tokens_per_s = 0;
  std::string checkpoint;  // the last checkpoint written ("" if none)
  bool stopped_by_signal = false;
  std::vector<EvalLengthResult> final_eval;
};

TrainSummary train(const LoadedConfig& config, Ops& ops, const TrainOptions& options);

}  // namespace dape
