// `dape train`: trains a model from a config; see core/train/trainer.h.
#include <cstdio>

#include "common/log.h"
#include "core/config/config.h"
#include "core/train/trainer.h"
#include "launcher/commands.h"
#include "launcher/ops_factory.h"

namespace dape {

CommandFn add_train_command(CLI::App& app, const GlobalOptions& global) {
  struct Args {
    std::string config;
    std::vector<std::string> sets;
    std::string resume = "auto";
    std::string init_from;
    int64_t stop_at_step = 0;
    bool no_progress = false;
    bool check = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("train", "Train a model from a config file");
  cmd->add_option("--config", args->config, "Experiment config (protobuf text, configs/*.pbtxt)")
      ->required();
  cmd->add_option("--set", args->sets,
                  "Override a config field by its path, e.g. --set train.steps=100 (repeatable; "
                  "repeated fields take comma-separated lists)");
  cmd->add_option(
         "--resume", args->resume,
         "auto: continue from the newest complete checkpoint in run_dir if any; none: start "
         "fresh; or a checkpoint directory")
      ->capture_default_str();
  cmd->add_option(
         "--stop-at-step", args->stop_at_step,
         "Save a checkpoint and stop once this many steps are done (the schedule still spans "
         "train.steps); 0: train to the end")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--init-from", args->init_from,
                  "Start a fresh run from the weights of a safetensors file written by `dape "
                  "export` (optimizer moments zero, step 0); ignored when resuming");
  cmd->add_flag("--no-progress", args->no_progress, "Do not draw progress lines");
  cmd->add_flag("--check", args->check,
                "Only load and validate the config, print the resolved config, exit");
  return [args, &global]() {
    LoadedConfig cfg = load_config(args->config, args->sets);
    apply_device_options(global, cfg);
    validate_config(cfg, global.world ? global.world->size() : 1);
    if (args->check) {
      std::printf("%s", resolved_text(cfg.msg).c_str());
      return 0;
    }
    // The config's log level, unless one was given on the command line.
    if (global.log_level == GlobalOptions().log_level)
      spdlog::set_level(spdlog::level::from_str(cfg.msg.log().level()));
    const int threads = global.threads > 0 ? global.threads : cfg.msg.train().threads();
    const std::unique_ptr<Ops> ops = make_process_ops(
        cfg.msg.train().device(), cfg.msg.train().precision(), threads, global.world);
    TrainOptions opts;
    opts.resume = args->resume;
    opts.stop_at_step = args->stop_at_step;
    opts.init_from = args->init_from;
    opts.progress = !args->no_progress;
    opts.world = global.world;
    TrainSummary s = train(cfg, *ops, opts);
    if (global.world && global.world->rank() != 0) return 0;
    if (!s.final_eval.empty()) {
      std::printf("\nvalidation after %lld steps (%s):\n%s", static_cast<long long>(s.last_step),
                  cfg.msg.run_dir().c_str(), format_eval_table(s.final_eval).c_str());
    }
    DAPE_LOG_INFO("trained steps {} to {}: final loss {:.4f}, {:.0f} tokens/s", s.first_step,
                  s.last_step, s.final_loss, s.tokens_per_s);
    return 0;
  };
}

}  // namespace dape
