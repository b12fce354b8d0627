// `dape attention-map`: one layer's per-head attention probabilities P (and DAPE's adjustment f)
// on a given text, as JSON (core/model/attention_map.h) or as a PNG grid drawn from that JSON by
// scripts/plot_attention_map.py (heads × {P, f}).
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/log.h"
#include "core/checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "core/data/dataset_manifest.h"
#include "core/data/tokenizer.h"
#include "core/model/attention_map.h"
#include "core/model/decoder.h"
#include "launcher/commands.h"
#include "launcher/ops_factory.h"

extern char** environ;

namespace dape {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPlotScript = "plot_attention_map.py";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The plotting script: $DAPE_PLOT_ATTENTION_MAP, else scripts/ beside or above the binary's
// directory (build/dape → scripts/).
std::string find_plot_script() {
  if (const char* env = std::getenv("DAPE_PLOT_ATTENTION_MAP")) {
    if (!path_exists(env)) fail("$DAPE_PLOT_ATTENTION_MAP names '{}', which does not exist", env);
    return env;
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  std::string tried;
  if (!ec) {
    for (const fs::path& dir : {self.parent_path(), self.parent_path().parent_path()}) {
      const std::string candidate = (dir / "scripts" / kPlotScript).string();
      if (path_exists(candidate)) return candidate;
      tried += (tried.empty() ? "" : ", ") + candidate;
    }
  }
  fail("cannot find scripts/{} (tried {}); set $DAPE_PLOT_ATTENTION_MAP or write --out FILE.json",
       kPlotScript, tried.empty() ? "nothing: /proc/self/exe is unreadable" : tried);
}

void run_plot_script(const std::string& json_path, const std::string& png_path) {
  const std::string script = find_plot_script();
  std::vector<std::string> argv_s = {"python3", script, json_path, "--out", png_path};
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, "python3", nullptr, nullptr, argv.data(), environ);
  if (rc != 0) fail("cannot start python3 to run {}: {}", script, std::strerror(rc));
  int status = 0;
  if (waitpid(pid, &status, 0) < 0)
    fail("waiting for python3 {}: {}", script, std::strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail("python3 {} {} --out {} failed (status {}); the JSON is in {}", script, json_path,
         png_path, WIFEXITED(status) ? WEXITSTATUS(status) : -1, json_path);
}

}  // namespace

CommandFn add_attention_map_command(CLI::App& app, const GlobalOptions& global) {
  struct Args {
    std::string checkpoint;
    std::string text;
    int layer = 0;
    std::string out;
    std::string data;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "attention-map",
      "Write one layer's per-head attention probabilities (and DAPE's f) on a text, as JSON or "
      "a PNG grid");
  cmd->add_option("--checkpoint", args->checkpoint,
                  "A checkpoint step directory or a run directory (its newest checkpoint)")
      ->required();
  cmd->add_option("--text", args->text,
                  "The text to run the model on (keep it short: the map holds heads × N² values)")
      ->required();
  cmd->add_option("--layer", args->layer, "The layer, 0-based")->capture_default_str();
  cmd->add_option("--out", args->out,
                  "FILE.json (the map) or FILE.png (a grid drawn by scripts/plot_attention_map.py "
                  "with python3 and matplotlib; the JSON is written beside it as FILE.json)")
      ->required();
  cmd->add_option("--data", args->data,
                  "Dataset directory whose tokenizer to use (default: the one the model was "
                  "trained on)");
  return [args, &global]() {
    const bool png = ends_with(args->out, ".png");
    if (!png && !ends_with(args->out, ".json"))
      fail("--out '{}' must end in .json or .png", args->out);
    if (args->text.empty()) fail("--text is empty: give the text to run the model on");
    const CheckpointRef ref = open_checkpoint(args->checkpoint);
    LoadedConfig cfg = parse_config_text(ref.manifest.config(), ref.dir + "/manifest.pb (config)");
    cfg.msg.clear_parallel();
    apply_device_options(global, cfg);
    validate_config(cfg);
    const std::string data_dir = args->data.empty() ? cfg.msg.data().path() : args->data;
    if (!is_directory(data_dir))
      fail(
          "the dataset directory '{}' does not exist: its manifest holds the tokenizer the model "
          "was trained with; pass --data DIR naming a dataset prepared with the same tokenizer",
          data_dir);
    const data::Dataset manifest = data::load_manifest(data_dir);
    data::validate_manifest(manifest, data::manifest_path(data_dir));
    const auto tokenizer = data::tokenizer_from_manifest(manifest, data_dir);
    if (!tokenizer)
      fail("{}: tokenizer '{}' cannot be run by this build (supported: byte, sentencepiece)",
           data::manifest_path(data_dir), manifest.tokenizer().kind());

    std::vector<int32_t> tokens;
    tokenizer->encode(args->text, tokens);
    std::vector<std::string> token_text;
    for (const int32_t& t : tokens)
      token_text.push_back(tokenizer->decode(std::span<const int32_t>(&t, 1), true));

    const ModelSpec spec = ModelSpec::from_config(cfg.msg.model(), manifest.vocab_size());
    const std::unique_ptr<Ops> ops = make_process_ops(
        cfg.msg.train().device(), cfg.msg.train().precision(),
        global.threads > 0 ? global.threads : cfg.msg.train().threads(), global.world);
    Decoder model(spec, *ops, /*trainable=*/false);
    load_checkpoint(ref, *ops, model.params(), nullptr, {spec.vocab, spec.padded_vocab});
    DAPE_LOG_INFO("attention map of layer {} over {} tokens: {} (step {})", args->layer,
                  tokens.size(), spec.describe(), ref.manifest.step());
    const AttentionMap map = attention_map(model, tokens, args->layer);

    const std::string json_path =
        png ? args->out.substr(0, args->out.size() - 4) + ".json" : args->out;
    write_file_atomic(json_path, attention_map_json(map, tokens, token_text) + "\n");
    DAPE_LOG_INFO("wrote {}", json_path);
    if (png) {
      run_plot_script(json_path, args->out);
      DAPE_LOG_INFO("wrote {}", args->out);
    }
    return 0;
  };
}

}  // namespace dape
