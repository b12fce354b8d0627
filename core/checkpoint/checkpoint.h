/*
 * Checkpoints: save and resume everything a run needs to continue bit for bit.
 *
 * Layout (DESIGN.md §5):
 *   RUN_DIR/checkpoints/step_00000040/shard_00000.bin   raw little-endian float32 tensor data
 *   RUN_DIR/checkpoints/step_00000040/manifest.pb       protobuf (core/checkpoint/checkpoint.proto)
 *   RUN_DIR/checkpoints/latest                          "step_00000040"
 * Every tensor is recorded with its global shape and, per shard, its offset in the global tensor,
 * byte range and XXH64, so loading can verify every byte and — once there are several ranks —
 * read a checkpoint at another layout. What is saved: the parameters (by their names), the AdamW
 * moments ("optim.m.<name>", "optim.v.<name>"), the step, the data position (samples consumed),
 * named RNG counters and the resolved config.
 *
 * Commit protocol: the step directory is written under a temporary name, every file fsynced, the
 * manifest written last, the directory renamed into place and `latest` replaced by
 * write-temp-then-rename. A crash at any point leaves the previous checkpoint intact; a directory
 * without a manifest is incomplete and skipped (with a warning) when resuming.
 */
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/checkpoint/checkpoint.pb.h"
#include "core/model/param_store.h"
#include "core/optim/adamw_optimizer.h"
#include "kernels/ops.h"

namespace dape {

struct TrainingState {
  int64_t step = 0;              // optimizer steps completed
  int64_t samples_consumed = 0;  // global training samples consumed (the data position)
  double loss = 0;               // mean loss of the last step, for humans
  std::map<std::string, uint64_t> rng;
};

struct CheckpointRef {
  std::string dir;  // the step directory
  checkpoint::Manifest manifest;
};

// Saves a checkpoint of `state.step`; keeps the newest `keep_last` (0: all), never deleting
// `protect` (a step directory, e.g. the one this run resumed from). Returns the step directory.
std::string save_checkpoint(const std::string& run_dir, Ops& ops, const ParamStore& params,
                            const AdamW* optimizer, const TrainingState& state,
                            const std::string& config_text, int keep_last,
                            const std::string& protect = "");

// The newest complete checkpoint under RUN_DIR/checkpoints, or "" if there is none.
std::string find_latest_checkpoint(const std::string& run_dir);

// Accepts a step directory, a run directory, or a run's checkpoints/ directory; reads and checks
// the manifest. Errors name the path and what is missing or malformed.
CheckpointRef open_checkpoint(const std::string& path);

// Loads parameters (and, when optimizer is given, its moments) from a checkpoint whose tensors
// must match the model's names and shapes exactly; verifies every checksum. Returns the state.
TrainingState load_checkpoint(const CheckpointRef& ckpt, Ops& ops, ParamStore& params,
                              AdamW* optimizer);

// Human-readable listing: step, layout, config summary, tensors with shapes; with verify, every
// shard checksum is recomputed (a mismatch makes it throw after the report is built).
std::string inspect_checkpoint(const std::string& path, bool verify);

}  // namespace dape
