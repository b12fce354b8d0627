// `dape eval`: evaluates a checkpoint at a list of lengths (core/train/evaluator.h).
#include <cstdio>

#include "common/file_util.h"
#include "common/log.h"
#include "core/checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/model/decoder.h"
#include "core/train/evaluator.h"
#include "launcher/commands.h"
#include "launcher/ops_factory.h"

namespace dape {

CommandFn add_eval_command(CLI::App& app, const GlobalOptions& global) {
  struct Args {
    std::string checkpoint;
    std::vector<int> lengths;
    int last = 256;
    std::string out;
    std::string data;
    int max_chunks = -1;
    std::string attention;
    bool no_progress = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd =
      app.add_subcommand("eval", "Evaluate a checkpoint's perplexity at several lengths");
  cmd->add_option("--checkpoint", args->checkpoint,
                  "A checkpoint step directory or a run directory")
      ->required();
  cmd->add_option("--lengths", args->lengths,
                  "Comma-separated evaluation lengths, e.g. 128,256,512")
      ->delimiter(',')
      ->required()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--last", args->last,
                  "Also report perplexity over the last N predictions of each chunk")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--out", args->out, "Write the results as JSON to this file");
  cmd->add_option("--data", args->data,
                  "Dataset directory or Megatron data (default: the one the model was trained "
                  "on; Megatron data is split by the config's data.val_fraction)");
  cmd->add_option(
         "--max-chunks", args->max_chunks,
         "At most N chunks per length, spread over the validation split (0: all; default: the "
         "config's eval.max_chunks)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--attention", args->attention,
                  "Attention implementation: reference|fused (default: the config's)");
  cmd->add_flag("--no-progress", args->no_progress, "Do not draw progress bars");
  return [args, &global]() {
    CheckpointRef ref = open_checkpoint(args->checkpoint);
    LoadedConfig cfg = parse_config_text(ref.manifest.config(), ref.dir + "/manifest.pb (config)");
    if (!args->attention.empty()) apply_override(cfg, "model.attention=" + args->attention);
    // One process, whatever layout the checkpoint was trained at (it loads at any layout).
    cfg.msg.clear_parallel();
    apply_device_options(global, cfg);
    validate_config(cfg);
    const std::string data_dir = args->data.empty() ? cfg.msg.data().path() : args->data;
    data::DatasetOpenOptions dopts;
    dopts.show_progress = !args->no_progress;
    dopts.vocab_size = cfg.msg.model().vocab_size();  // Megatron data (model.vocab_size is set)
    if (args->data.empty()) dopts.validation_path = cfg.msg.data().validation_path();
    dopts.val_fraction = cfg.msg.data().val_fraction();
    data::TokenDataset dataset(data_dir, dopts);
    const std::unique_ptr<Ops> ops = make_process_ops(
        cfg.msg.train().device(), cfg.msg.train().precision(),
        global.threads > 0 ? global.threads : cfg.msg.train().threads(), global.world);
    const ModelSpec spec = ModelSpec::from_config(cfg.msg.model(), dataset.vocab_size());
    Decoder model(spec, *ops, /*trainable=*/false);
    load_checkpoint(ref, *ops, model.params(), nullptr, {spec.vocab, spec.padded_vocab});
    DAPE_LOG_INFO("evaluating {} (step {}): {}", ref.dir, ref.manifest.step(), spec.describe());

    EvalOptions opts;
    opts.lengths = args->lengths;
    opts.last = args->last;
    opts.max_chunks = args->max_chunks >= 0 ? args->max_chunks : cfg.msg.eval().max_chunks();
    opts.progress = !args->no_progress;
    auto results = evaluate(model, dataset.validation(), opts);
    std::printf("%s", format_eval_table(results).c_str());
    if (!args->out.empty()) {
      write_file_atomic(args->out, eval_results_json(results, ref.manifest.step()) + "\n");
      DAPE_LOG_INFO("wrote {}", args->out);
    }
    return 0;
  };
}

}  // namespace dape
