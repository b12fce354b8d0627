// `dape generate`: continues a prompt with a trained checkpoint, by KV-cache decoding
// (Decoder::decode, core/model/kv_cache.h) and sampling (core/model/sampler.h). The tokenizer is
// the one the checkpoint's dataset was prepared with, read from that dataset's manifest.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/log.h"
#include "core/checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "core/data/dataset_manifest.h"
#include "core/data/megatron_dataset.h"
#include "core/data/tokenizer.h"
#include "core/model/decoder.h"
#include "core/model/sampler.h"
#include "launcher/commands.h"
#include "launcher/ops_factory.h"

namespace dape {
namespace {

// The tokenizer of the dataset at `dir`, which the checkpoint's config names (or --data).
std::unique_ptr<data::TextTokenizer> dataset_tokenizer(const std::string& dir, bool from_config,
                                                       int32_t* vocab) {
  if (!is_directory(dir) && data::find_megatron_dataset(dir))
    fail(
        "'{}'{} is Megatron data, which records no tokenizer, and generate needs one to encode "
        "the prompt: pass --data DIR naming a dataset written by `dape prepare` with the same "
        "tokenizer and vocabulary",
        dir, from_config ? " (data.path of the checkpoint's config)" : "");
  if (!is_directory(dir))
    fail(
        "the dataset directory '{}'{} does not exist (or is not a directory): its manifest "
        "holds the tokenizer the model was trained with; pass --data DIR to name the dataset "
        "where it is now",
        dir, from_config ? " named by the checkpoint's config (data.path)" : "");
  const data::Dataset manifest = data::load_manifest(dir);
  data::validate_manifest(manifest, data::manifest_path(dir));
  auto tokenizer = data::tokenizer_from_manifest(manifest, dir);
  if (!tokenizer)
    fail("{}: tokenizer '{}' cannot be run by this build (supported: byte, sentencepiece)",
         data::manifest_path(dir), manifest.tokenizer().kind());
  *vocab = manifest.vocab_size();
  return tokenizer;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

CommandFn add_generate_command(CLI::App& app, const GlobalOptions& global) {
  struct Args {
    std::string checkpoint;
    std::string prompt;
    int max_new = 256;
    double temperature = 1.0;
    int top_k = 0;
    uint64_t seed = 0;
    std::string data;
    std::string attention;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "generate", "Continue a prompt with a checkpoint (KV-cache decoding); prints the text");
  cmd->add_option("--checkpoint", args->checkpoint,
                  "A checkpoint step directory or a run directory (its newest checkpoint)")
      ->required();
  cmd->add_option("--prompt", args->prompt, "The text to continue (not empty)")->required();
  cmd->add_option("--max-new", args->max_new,
                  "Generate at most N tokens; generation also stops at the end-of-document token")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", args->temperature,
                  "Sampling temperature (>= 0); 0 is greedy (always the most likely token)")
      ->capture_default_str();
  cmd->add_option("--top-k", args->top_k,
                  "Sample only among the K most likely tokens (0: all of them)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", args->seed,
                  "Random seed of the sampler: the same seed, checkpoint and prompt give the same "
                  "text")
      ->capture_default_str();
  cmd->add_option("--data", args->data,
                  "Dataset directory whose tokenizer to use (default: the one the model was "
                  "trained on)");
  cmd->add_option("--attention", args->attention,
                  "Attention implementation: reference|fused (default: the config's)");
  return [args, &global]() {
    if (args->prompt.empty()) fail("--prompt is empty: give the text to continue");
    const CheckpointRef ref = open_checkpoint(args->checkpoint);
    LoadedConfig cfg = parse_config_text(ref.manifest.config(), ref.dir + "/manifest.pb (config)");
    if (!args->attention.empty()) apply_override(cfg, "model.attention=" + args->attention);
    // One process, whatever layout the checkpoint was trained at (it loads at any layout).
    cfg.msg.clear_parallel();
    apply_device_options(global, cfg);
    validate_config(cfg);
    const bool from_config = args->data.empty();
    const std::string data_dir = from_config ? cfg.msg.data().path() : args->data;
    int32_t vocab = 0;
    const auto tokenizer = dataset_tokenizer(data_dir, from_config, &vocab);
    Sampler sampler({args->temperature, args->top_k, args->seed});

    const ModelSpec spec = ModelSpec::from_config(cfg.msg.model(), vocab);
    std::vector<int32_t> prompt;
    tokenizer->encode(args->prompt, prompt);
    if (prompt.empty()) fail("--prompt '{}' encodes to no tokens", args->prompt);
    const int64_t capacity = static_cast<int64_t>(prompt.size()) + args->max_new;
    if (spec.position == PositionScheme::learned) {
      if (static_cast<int64_t>(prompt.size()) > spec.max_positions)
        fail(
            "the prompt is {} tokens, more than the {} positions (model.max_positions) of this "
            "learned-position model",
            prompt.size(), spec.max_positions);
      if (capacity > spec.max_positions)
        fail(
            "the prompt ({} tokens) and --max-new {} need {} positions, more than the {} "
            "(model.max_positions) of this learned-position model; use --max-new {} or less",
            prompt.size(), args->max_new, capacity, spec.max_positions,
            spec.max_positions - static_cast<int64_t>(prompt.size()));
    }
    if (capacity > (int64_t{1} << 30))
      fail("the prompt ({} tokens) and --max-new {} exceed 2^30 positions", prompt.size(),
           args->max_new);

    const std::unique_ptr<Ops> ops = make_process_ops(
        cfg.msg.train().device(), cfg.msg.train().precision(),
        global.threads > 0 ? global.threads : cfg.msg.train().threads(), global.world);
    Decoder model(spec, *ops, /*trainable=*/false);
    load_checkpoint(ref, *ops, model.params(), nullptr, {spec.vocab, spec.padded_vocab});
    KvCache cache = model.make_cache(1, static_cast<int>(capacity));
    DAPE_LOG_INFO("generating from {} (step {}): {}; prompt of {} tokens, KV cache {:.1f} KiB",
                  ref.dir, ref.manifest.step(), spec.describe(), prompt.size(),
                  cache.bytes() / 1024.0);

    std::fwrite(args->prompt.data(), 1, args->prompt.size(), stdout);
    std::fflush(stdout);
    const auto start = std::chrono::steady_clock::now();
    std::vector<float> logits =
        model.decode<float>(prompt.data(), 1, static_cast<int>(prompt.size()), cache);
    const double prefill_s = seconds_since(start);
    std::vector<int32_t> generated;
    int steps = 0;       // decoding steps after the prefill
    size_t printed = 0;  // bytes of the decoded continuation already written
    const char* stop = "--max-new reached";
    while (true) {
      const int32_t id = sampler.next(logits);
      if (id == tokenizer->eod_id()) {
        stop = "end of document";
        break;
      }
      generated.push_back(id);
      // Decoding the whole continuation each time keeps multi-token characters and pieces whole.
      const std::string text = tokenizer->decode(generated);
      if (text.size() > printed) {
        std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
        std::fflush(stdout);
        printed = text.size();
      }
      if (static_cast<int>(generated.size()) == args->max_new) break;
      logits = model.decode<float>(&id, 1, 1, cache);
      ++steps;
    }
    std::fputc('\n', stdout);
    std::fflush(stdout);
    const double decode_s = seconds_since(start) - prefill_s;
    DAPE_LOG_INFO("{} tokens generated ({}); prefill of {} tokens {:.3f} s, then {:.1f} tokens/s",
                  generated.size(), stop, prompt.size(), prefill_s,
                  steps > 0 ? steps / std::max(decode_s, 1e-9) : 0.0);
    return 0;
  };
}

}  // namespace dape
