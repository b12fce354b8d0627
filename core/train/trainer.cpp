#include "core/train/trainer.h"

#include <chrono>
#include <cmath>
#include <optional>

#include "common/file_util.h"
#include "common/json_writer.h"
#include "common/log.h"
#include "common/progress.h"
#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/model_export.h"
#include "core/data/dataset.h"
#include "core/data/train_batch_source.h"
#include "core/model/decoder.h"
#include "core/optim/adamw_optimizer.h"
#include "core/optim/lr_schedule.h"
#include "core/train/dataset_preparation.h"
#include "core/train/gradient_sync.h"
#include "core/train/metrics.h"
#include "core/train/stop_signal.h"
#include "kernels/cuda_backend.h"
#include "parallel/topology.h"

namespace dape {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The model section of a resolved config, for comparing a checkpoint with the current config.
std::string model_text(const config::Config& c) {
  config::Config only;
  *only.mutable_model() = c.model();
  return resolved_text(only);
}

std::vector<int> lengths_or(const google::protobuf::RepeatedField<int32_t>& lengths, int fallback) {
  std::vector<int> out(lengths.begin(), lengths.end());
  if (out.empty()) out.push_back(fallback);
  return out;
}

}  // namespace

TrainSummary train(const LoadedConfig& loaded, Ops& ops, const TrainOptions& options) {
  const config::Config& cfg = loaded.msg;
  const auto& tc = cfg.train();
  LocalCommunicator alone;
  Communicator& world = options.world ? *options.world : alone;
  validate_config(loaded, world.size());
  // The DP × TP grid: tensor-parallel groups are consecutive ranks (parallel/topology.h). With a
  // CUDA Ops the groups' tensor collectives run over NCCL, after the Ops's compute stream.
  void* const cuda_stream = cuda_stream_of(ops);
  ParallelGroups groups = make_parallel_groups(world, cfg.parallel().tp(), cuda_stream);
  Communicator& tp = *groups.tp;
  Communicator& dp = *groups.dp;
  if (world.size() > 1)
    DAPE_LOG_INFO("parallel: {}; tensor-parallel group over {}, data-parallel group over {}",
                  groups.topo.str(), groups.tp->name(), groups.dp->name());
  const int dp_size = dp.size(), dp_rank = dp.rank();
  const bool root = world.rank() == 0;
  // Evaluation runs on one model replica: rank 0, with its tensor-parallel group.
  const bool evaluates = dp.rank() == 0;
  if (!cfg.data().has_path() || cfg.data().path().empty())
    fail(
        "data.path is not set: point it at a dataset directory written by `dape prepare` "
        "(e.g. --set data.path=data/kjv) or at Megatron data (PREFIX.idx)");
  prepare_dataset_if_missing(loaded, options.progress && root, world);
  const std::string run_dir = cfg.run_dir();
  const std::string config_text = resolved_text(cfg);
  if (root) {
    make_directories(run_dir);
    write_file_atomic(join_path(run_dir, "config.pbtxt"), config_text);
  }

  data::DatasetOpenOptions dopts;
  dopts.verify_checksums = cfg.data().verify_checksums();
  dopts.show_progress = options.progress && root;
  dopts.vocab_size = cfg.model().vocab_size();
  dopts.validation_path = cfg.data().validation_path();
  dopts.val_fraction = cfg.data().val_fraction();
  data::TokenDataset dataset(cfg.data().path(), dopts);
  const data::TokenStream& train_stream = dataset.train();

  const ModelSpec spec =
      ModelSpec::from_config(cfg.model(), dataset.vocab_size(), tp.size(), tp.rank());
  Decoder model(spec, ops, /*trainable=*/true, &tp);
  model.initialize(tc.seed());
  AdamW optimizer(ops, model.params(), {tc.beta1(), tc.beta2(), tc.adam_eps(), tc.weight_decay()},
                  cfg.parallel().zero_stage() == 1 ? &dp : nullptr);
  GradientSync gradient_sync(dp, model.params(), cfg.parallel().bucket_mb());

  const int T = tc.seq_len(), micro = tc.micro_batch();
  const int global_batch = tc.global_batch() > 0 ? tc.global_batch() : micro * dp_size;
  // This rank's slice of every global batch: samples [first, first + per_rank) of it.
  const int per_rank = global_batch / dp_size;
  const int64_t first_of_rank = int64_t{per_rank} * dp_rank;
  const int accum = per_rank / micro;
  const int64_t samples = data::count_samples(train_stream.size(), T);
  if (samples < global_batch)
    fail(
        "the training split of '{}' has {} tokens: {} samples of {} + 1 tokens, fewer than one "
        "global batch of {}",
        cfg.data().path(), train_stream.size(), samples, T, global_batch);
  data::TrainBatchSource batches(train_stream, T, tc.seed());

  LrSchedule schedule;
  schedule.peak = tc.lr();
  schedule.min_lr = tc.min_lr();
  schedule.total_steps = tc.steps();
  schedule.warmup_steps =
      tc.warmup_steps() >= 0
          ? tc.warmup_steps()
          : static_cast<int64_t>(std::llround(tc.warmup_fraction() * tc.steps()));

  // Where this rank sits, for checkpoints: what it writes, and the vocabulary rows to map.
  const VocabRows vocab_rows{spec.vocab, spec.padded_vocab};
  CheckpointPlace place;
  place.world = &world;
  place.dp = dp_size;
  place.dp_rank = dp_rank;
  place.tp = tp.size();
  place.tp_rank = tp.rank();
  place.zero_stage = optimizer.sharded() ? 1 : 0;
  place.vocab = vocab_rows;

  // ---- resume ----
  TrainingState state;
  std::string resumed_from;
  std::string ckpt_dir;
  if (options.resume == "auto") {
    ckpt_dir = find_latest_checkpoint(run_dir);
  } else if (options.resume != "none") {
    ckpt_dir = open_checkpoint(options.resume).dir;
  } else if (!find_latest_checkpoint(run_dir).empty()) {
    fail(
        "run directory '{}' already holds checkpoints; use --resume auto to continue it, or choose "
        "another run_dir",
        run_dir);
  }
  if (!ckpt_dir.empty()) {
    CheckpointRef ref = open_checkpoint(ckpt_dir);
    LoadedConfig saved =
        parse_config_text(ref.manifest.config(), ref.dir + "/manifest.pb (config)");
    if (model_text(saved.msg) != model_text(cfg))
      fail("checkpoint '{}' was trained with another model config; its model section is:\n{}",
           ref.dir, model_text(saved.msg));
    if (saved.msg.train().seed() != tc.seed() || saved.msg.train().seq_len() != T)
      DAPE_LOG_WARN(
          "resuming with a different train.seed or train.seq_len than the checkpoint: the data "
          "order will differ from an uninterrupted run");
    state = load_checkpoint(ref, ops, model.params(), &optimizer, vocab_rows);
    resumed_from = ref.dir;
    DAPE_LOG_INFO("resumed from {} at step {} ({} samples consumed)", ref.dir, state.step,
                  state.samples_consumed);
  }
  if (ckpt_dir.empty() && !options.init_from.empty()) {
    init_from_export(options.init_from, ops, model.params(), spec.vocab, spec.padded_vocab);
    DAPE_LOG_INFO("initial weights from {}", options.init_from);
  }
  state.rng["seed"] = tc.seed();

  DAPE_LOG_INFO("model: {}; {:.2f} M parameters", spec.describe(), model.params().size() / 1e6);
  DAPE_LOG_INFO("data: {} training tokens, {} validation tokens, {} samples of {} tokens per epoch",
                train_stream.size(), dataset.validation().size(), samples, T);
  DAPE_LOG_INFO(
      "batch: {} samples × {} tokens = {} tokens per step ({} micro-batch(es) of {}{}), {} steps",
      global_batch, T, int64_t{global_batch} * T, accum, micro,
      dp_size > 1 ? fmt::format(" on each of {} data-parallel ranks", dp_size) : "", tc.steps());
  if (dp_size > 1) {
    DAPE_LOG_INFO("data parallel: {} ranks, gradients summed in {} bucket(s){}", dp_size,
                  gradient_sync.buckets(),
                  optimizer.sharded() ? ", optimizer moments sharded (ZeRO-1)" : "");
  }

  MetricsLog metrics, eval_log;
  if (root) {
    metrics =
        MetricsLog(join_path(run_dir, "metrics.jsonl"), resumed_from.empty() ? -1 : state.step);
    eval_log = MetricsLog(join_path(run_dir, "eval.jsonl"), resumed_from.empty() ? -1 : state.step);
  }

  EvalOptions periodic_eval;
  periodic_eval.lengths = lengths_or(cfg.eval().periodic_lengths(), T);
  periodic_eval.last = cfg.eval().last();
  periodic_eval.max_chunks = cfg.eval().max_chunks();
  periodic_eval.progress = options.progress && root;

  const int64_t end_step =
      options.stop_at_step > 0 ? std::min<int64_t>(options.stop_at_step, tc.steps()) : tc.steps();
  TrainSummary summary;
  summary.first_step = state.step;
  const double grad_scale = 1.0 / (static_cast<double>(global_batch) * T);
  const double flops_per_token = model.training_flops_per_token(T);
  std::vector<int32_t> inputs(static_cast<size_t>(micro) * T),
      targets(static_cast<size_t>(micro) * T);
  const auto run_start = Clock::now();
  int64_t tokens_this_run = 0;
  double loss = state.loss;
  std::optional<ProgressBar> bar;
  if (options.progress && root) bar.emplace("train", end_step, "step", 30.0, state.step);

  // Every rank writes the pieces it alone owns (checkpoint.h); rank 0 commits the step.
  auto save = [&]() {
    summary.checkpoint =
        save_checkpoint(run_dir, ops, model.params(), &optimizer, state, config_text,
                        cfg.checkpoint().keep_last(), resumed_from, place);
    if (root) DAPE_LOG_INFO("saved checkpoint {}", summary.checkpoint);
  };

  StopSignal stop_signal;
  while (state.step < end_step) {
    const auto step_start = Clock::now();
    model.params().zero_grads(ops);
    double loss_sum = 0;
    for (int m = 0; m < accum; ++m) {
      batches.fill(state.samples_consumed + first_of_rank + int64_t{m} * micro, micro,
                   inputs.data(), targets.data());
      // Gradients are final only in the last micro-step: only then are they summed over ranks.
      const bool last_micro = m == accum - 1 && dp_size > 1;
      if (last_micro) {
        gradient_sync.begin();
        model.set_gradient_hook([&](const Tensor& g) { gradient_sync.mark_ready(g); });
      }
      loss_sum +=
          model.forward(inputs.data(), targets.data(), micro, T, /*training=*/true, grad_scale);
      model.backward();
      if (last_micro) {
        model.set_gradient_hook({});
        gradient_sync.finish();
      }
    }
    if (dp_size > 1) loss_sum = dp.all_reduce_sum(loss_sum);
    const double grad_norm = clip_grad_norm(ops, model.params(), tp, tc.grad_clip());
    const double lr = schedule.at(state.step);
    optimizer.step(lr, state.step + 1);
    ops.synchronize();

    loss = loss_sum * grad_scale;
    if (!std::isfinite(loss))
      fail("training diverged at step {}: loss is {} (lr {:.3g}, grad norm {:.3g})", state.step + 1,
           loss, lr, grad_norm);
    state.step += 1;
    state.samples_consumed += global_batch;
    state.loss = loss;
    const double step_s = seconds_since(step_start);
    tokens_this_run += int64_t{global_batch} * T;
    const double tok_s = int64_t{global_batch} * T / step_s;

    JsonWriter j;
    j.begin_object()
        .field("step", state.step)
        .field("loss", loss)
        .field("lr", lr)
        .field("grad_norm", grad_norm)
        .field("tokens_per_s", tok_s)
        .field("gflops", tok_s * flops_per_token / 1e9)
        .field("step_time_s", step_s)
        .field("samples", state.samples_consumed)
        .field("tokens", state.samples_consumed * T)
        .field("elapsed_s", seconds_since(run_start))
        .end_object();
    metrics.write(j.str());

    const bool last = state.step == end_step;
    if (bar &&
        (state.step % cfg.log().interval() == 0 || last || state.step == summary.first_step + 1)) {
      const double avg_tok_s = tokens_this_run / seconds_since(run_start);
      bar->update(
          state.step,
          fmt::format("loss {:.4f} | lr {:.2e} | grad {:.3f} | {} tok/s | {:.1f} GFLOP/s", loss, lr,
                      grad_norm, si_format(avg_tok_s), avg_tok_s * flops_per_token / 1e9));
    }
    if (evaluates && cfg.eval().interval() > 0 && state.step % cfg.eval().interval() == 0 &&
        state.step < tc.steps()) {
      auto results = evaluate(model, dataset.validation(), periodic_eval);
      eval_log.write(eval_results_json(results, state.step));
      DAPE_LOG_INFO(
          "step {} validation: {}", state.step,
          results.front().chunks
              ? fmt::format("ppl {:.3f} at length {}", results.front().ppl, results.front().length)
              : std::string("skipped"));
    }
    const bool periodic_ckpt =
        cfg.checkpoint().interval() > 0 && state.step % cfg.checkpoint().interval() == 0;
    const bool saves =
        periodic_ckpt || (last && (cfg.checkpoint().save_final() || state.step < tc.steps()));
    // A stop signal on any rank stops every rank after this same step (stop_signal.h).
    const double signalled =
        world.all_reduce_max(options.stop_on_signal && stop_signal.requested() ? 1.0 : 0.0);
    if (saves || signalled > 0) save();
    if (signalled > 0 && !last) {
      if (root)
        DAPE_LOG_WARN("stop signal received: stopped after step {} with checkpoint {}", state.step,
                      summary.checkpoint);
      summary.stopped_by_signal = true;
      break;
    }
  }
  if (bar) bar->finish(fmt::format("loss {:.4f}", loss));

  summary.last_step = state.step;
  summary.final_loss = loss;
  summary.tokens_per_s = tokens_this_run > 0 ? tokens_this_run / seconds_since(run_start) : 0;
  if (evaluates && state.step >= tc.steps() && cfg.eval().at_end()) {
    EvalOptions final_eval = periodic_eval;
    final_eval.lengths = lengths_or(cfg.eval().lengths(), T);
    summary.final_eval = evaluate(model, dataset.validation(), final_eval);
    const std::string json = eval_results_json(summary.final_eval, state.step);
    eval_log.write(json);
    if (root) write_file_atomic(join_path(run_dir, "eval_final.json"), json + "\n");
  }
  return summary;
}

}  // namespace dape
