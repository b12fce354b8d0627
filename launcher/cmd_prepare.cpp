// `dape prepare`: tokenizes text into a dataset directory (core/data/prepare.h).
#include <cstdio>

#include "core/data/prepare.h"
#include "launcher/commands.h"

namespace dape {

CommandFn add_prepare_command(CLI::App& app, const GlobalOptions&) {
  auto opts = std::make_shared<data::PrepareOptions>();
  auto no_progress = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "prepare", "Tokenize text into token shards with a train/validation split");
  cmd->add_option("--input", opts->inputs, "Input files or directories (each file is one document)")
      ->required();
  cmd->add_option("--tokenizer", opts->tokenizer,
                  "Tokenizer: byte | sp:MODEL (a SentencePiece model file, copied into the "
                  "dataset) | train-sp:VOCAB (train a SentencePiece BPE model of VOCAB pieces on "
                  "the input)")
      ->capture_default_str();
  cmd->add_option("--sp-train-bytes", opts->sp_train_bytes,
                  "train-sp: train on the first N bytes of text, in input order")
      ->capture_default_str();
  cmd->add_option("--out", opts->out_dir, "Output dataset directory")->required();
  cmd->add_option("--format", opts->format, "Input format: auto|text")->capture_default_str();
  cmd->add_option(
         "--val-fraction", opts->val_fraction,
         "Fraction held out for validation (by document with >= 20 documents, else the tail "
         "of each document)")
      ->capture_default_str();
  cmd->add_option("--shard-tokens", opts->shard_tokens, "Maximum tokens per shard file")
      ->capture_default_str();
  cmd->add_flag("--no-progress", *no_progress, "Do not draw a progress bar");
  return [opts, no_progress]() {
    opts->show_progress = !*no_progress;
    data::PrepareSummary s = data::prepare_dataset(*opts);
    std::printf("%s", data::format_prepare_summary(s).c_str());
    return 0;
  };
}

}  // namespace dape
