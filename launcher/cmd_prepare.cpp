// `dape prepare`: tokenizes text or JSON lines into a dataset directory (core/data/prepare.h).
#include <cstdio>

#include "core/data/prepare.h"
#include "launcher/commands.h"

namespace dape {

CommandFn add_prepare_command(CLI::App& app, const GlobalOptions& global) {
  auto opts = std::make_shared<data::PrepareOptions>();
  auto no_progress = std::make_shared<bool>(false);
  auto on_bad_record = std::make_shared<std::string>("error");
  CLI::App* cmd = app.add_subcommand(
      "prepare",
      "Tokenize text or JSON lines into token shards with a train/validation split. Under "
      "mpirun each rank tokenizes a contiguous share of the documents and writes its own shards; "
      "the dataset is the same for any number of ranks");
  cmd->add_option("--input", opts->inputs,
                  "Input files or directories (directories are walked in sorted order)")
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
  cmd->add_option("--format", opts->format,
                  "Input format: text (each file is one document), jsonl (each line is a JSON "
                  "object, one document; .zst files are decompressed), or auto (by name: .jsonl, "
                  ".json, .jsonl.zst, .json.zst are jsonl; .txt.zst is compressed text; another "
                  ".zst needs --format; anything else is text)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "text", "jsonl"}));
  cmd->add_option("--text-field", opts->reader.text_field,
                  "JSON lines: the field that holds the text (other fields are ignored)")
      ->capture_default_str();
  cmd->add_option("--on-bad-record", *on_bad_record,
                  "A bad record (malformed JSON line, missing or non-string text field, invalid "
                  "UTF-8, empty line, truncated or corrupt .zst): error (stop, naming the file "
                  "and line) or skip (leave it out, count it by reason in the summary; a "
                  "truncated .zst is read up to the cut)")
      ->capture_default_str()
      ->check(CLI::IsMember({"error", "skip"}));
  cmd->add_option(
         "--val-fraction", opts->val_fraction,
         "Fraction held out for validation (by document with >= 20 documents, else the tail "
         "of each document)")
      ->capture_default_str();
  cmd->add_option("--shard-tokens", opts->shard_tokens, "Maximum tokens per shard file")
      ->capture_default_str();
  cmd->add_flag("--no-progress", *no_progress, "Do not draw a progress bar");
  return [opts, no_progress, on_bad_record, &global]() {
    opts->show_progress = !*no_progress;
    opts->reader.on_bad_record = *on_bad_record == "skip" ? data::ReaderOptions::BadRecords::skip
                                                          : data::ReaderOptions::BadRecords::error;
    LocalCommunicator one;
    Communicator& comm = global.world ? *global.world : one;
    data::PrepareSummary s = data::prepare_dataset(*opts, comm);
    if (comm.rank() == 0) std::printf("%s", data::format_prepare_summary(s).c_str());
    return 0;
  };
}

}  // namespace dape
