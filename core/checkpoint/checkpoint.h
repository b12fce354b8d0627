/*
 * Checkpoints: save and resume everything a run needs to continue bit for bit, at the layout it
 * was saved at or at another one.
 *
 * Layout (DESIGN.md §5):
 *   RUN_DIR/checkpoints/step_00000040/shard_00003.bin   raw little-endian float32 pieces that
 *                                                       world rank 3 owns
 *   RUN_DIR/checkpoints/step_00000040/manifest.pb       protobuf (core/checkpoint/checkpoint.proto)
 *   RUN_DIR/checkpoints/latest                          "step_00000040"
 *
 * Sharded: every rank writes what it alone owns, and nothing is gathered. A tensor cut over the
 * tensor-parallel ranks is written by each TP rank of data-parallel rank 0 (its piece); a
 * replicated tensor once, by TP rank 0 of DP rank 0; the AdamW moments by the rank that keeps
 * them (ZeRO-1: each DP rank its range of the flat buffer of its TP piece; unsharded: DP rank 0).
 * Each piece is a box of the tensor's global shape (box.h) stored row-major, recorded in the
 * manifest with its file, byte range and XXH64; each tensor with its global shape. What is saved:
 * the parameters (by their names), the moments ("optim.m.<name>", "optim.v.<name>"), the step,
 * the data position (samples consumed), named RNG counters, the resolved config and the layout.
 *
 * Loading needs no communication: each rank works out the global boxes its layout needs (its
 * TensorSplit piece of every parameter, its ZeRO-1 range of the moments), reads the overlap of
 * every saved piece with them from the memory-mapped shard files, verifies the checksum of each
 * piece it reads, and checks that the pieces covered every value it needs. DP, TP and ZeRO may
 * all differ from the save. The vocabulary is padded to a multiple that grows with the TP size
 * (model_spec.h), so the embedding and LM head rows differ between layouts: padded rows are inert
 * (never a target, excluded from the softmax); rows the new layout has beyond those saved keep
 * their initial values (and zero moments), saved rows it does not have are ignored.
 *
 * Commit protocol: the step directory is written under a temporary name, every shard fsynced by
 * the rank that wrote it, the manifest written by rank 0 last, once every rank has reported its
 * pieces, the directory renamed into place and `latest` replaced by write-temp-then-rename. A
 * crash of any rank at any point leaves the previous checkpoint intact; a directory without a
 * manifest is incomplete and skipped (with a warning) when resuming.
 *
 * Fault injection, for tests of that protocol: with DAPE_FAULT_KILL_IN_SAVE=RANK:STEP in the
 * environment, world rank RANK kills itself (SIGKILL) after writing the first piece of its shard
 * of step STEP.
 */
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/checkpoint/checkpoint.pb.h"
#include "core/model/param_store.h"
#include "core/optim/adamw_optimizer.h"
#include "kernels/ops.h"
#include "parallel/comm.h"

namespace dape {

struct TrainingState {
  int64_t step = 0;              // optimizer steps completed
  int64_t samples_consumed = 0;  // global training samples consumed (the data position)
  double loss = 0;               // mean loss of the last step, for humans
  std::map<std::string, uint64_t> rng;
};

// The vocabulary rows of the embedding and LM head: the tokenizer's vocabulary and the padded
// count (the tensors' first dimension). {0, 0}: every tensor's shape must match exactly.
struct VocabRows {
  int64_t vocab = 0, padded = 0;
};

// Where this process sits in the job: what it owns and writes.
struct CheckpointPlace {
  Communicator* world = nullptr;  // every process of the job; nullptr: this process alone
  int dp = 1, dp_rank = 0;
  int tp = 1, tp_rank = 0;
  int zero_stage = 0;
  VocabRows vocab;
};

struct CheckpointRef {
  std::string dir;  // the step directory
  checkpoint::Manifest manifest;
};

// Saves a checkpoint of `state.step`; keeps the newest `keep_last` (0: all), never deleting
// `protect` (a step directory, e.g. the one this run resumed from). Collective over place.world:
// every rank writes its own shard and returns once rank 0 has committed the step directory.
// Returns the step directory.
std::string save_checkpoint(const std::string& run_dir, Ops& ops, const ParamStore& params,
                            const AdamW* optimizer, const TrainingState& state,
                            const std::string& config_text, int keep_last,
                            const std::string& protect = "", const CheckpointPlace& place = {});

// The newest complete checkpoint under RUN_DIR/checkpoints, or "" if there is none.
std::string find_latest_checkpoint(const std::string& run_dir);

// Accepts a step directory, a run directory, or a run's checkpoints/ directory; reads and checks
// the manifest. Errors name the path and what is missing or malformed.
CheckpointRef open_checkpoint(const std::string& path);

// Loads this rank's parameters (and, when optimizer is given, its moments: the ZeRO-1 range it
// keeps) from a checkpoint of the same model saved at any layout; the tensors' global shapes
// must match the model's, except the vocabulary rows described by `vocab`. Verifies the checksum
// of every piece it reads; errors name the checkpoint, the file and the tensor. Not collective.
// Returns the state.
TrainingState load_checkpoint(const CheckpointRef& ckpt, Ops& ops, ParamStore& params,
                              AdamW* optimizer, const VocabRows& vocab = {});

// Human-readable listing: step, layout, config summary, tensors with shapes; with verify, every
// shard checksum is recomputed (a mismatch makes it throw after the report is built).
std::string inspect_checkpoint(const std::string& path, bool verify);

}  // namespace dape
