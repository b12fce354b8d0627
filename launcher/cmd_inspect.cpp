// `dape inspect`: says what a token shard, dataset, Megatron data or checkpoint holds and
// verifies checksums.
#include <cstdio>

#include "common/file_util.h"
#include "core/checkpoint/checkpoint.h"
#include "core/data/inspect_data.h"
#include "core/data/megatron_dataset.h"
#include "launcher/commands.h"

namespace dape {

CommandFn add_inspect_command(CLI::App& app, const GlobalOptions&) {
  struct Args {
    std::string path;
    bool no_verify = false;
    int64_t vocab = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "inspect",
      "Show what a token shard, dataset, Megatron .bin/.idx or checkpoint holds; verify it");
  cmd->add_option("path", args->path,
                  "A .tok shard, a dataset directory, Megatron data (PREFIX.idx, PREFIX.bin or "
                  "PREFIX), or a checkpoint/run directory")
      ->required();
  cmd->add_flag("--no-verify", args->no_verify,
                "Skip verification (checksums; for Megatron data: pointers, doc_idx, .bin "
                "length, token ids)");
  cmd->add_option("--vocab", args->vocab,
                  "Megatron data: check every token id against this vocabulary size")
      ->check(CLI::PositiveNumber);
  return [args]() {
    const std::string& p = args->path;
    const bool verify = !args->no_verify;
    // A .idx, or a .bin or prefix beside one (a checkpoint's shard_*.bin is not Megatron data).
    const auto megatron_paths = is_directory(p) ? std::nullopt : data::find_megatron_dataset(p);
    const bool megatron =
        megatron_paths && (p.ends_with(".idx") || path_exists(megatron_paths->idx));
    if (!path_exists(p) && !megatron) fail("'{}' does not exist", p);
    if (args->vocab > 0 && !megatron)
      fail("--vocab applies to Megatron data only; '{}' is not a .idx/.bin pair", p);
    auto report = [&]() -> std::string {
      if (megatron) return data::inspect_megatron(p, verify, args->vocab);
      if (!is_directory(p)) return data::inspect_token_shard(p, verify);
      if (path_exists(join_path(p, "dataset.pbtxt"))) return data::inspect_dataset(p, verify);
      if (path_exists(join_path(p, "manifest.pb")) || path_exists(join_path(p, "checkpoints")) ||
          path_exists(join_path(p, "latest")))
        return inspect_checkpoint(p, verify);
      fail(
          "'{}' is neither a token shard, a dataset directory (dataset.pbtxt) nor a checkpoint "
          "(manifest.pb)",
          p);
    };
    try {
      std::printf("%s", report().c_str());
    } catch (const data::InspectFailure& e) {
      std::printf("%s", e.report().c_str());  // the whole report, then the problems as the error
      throw;
    }
    return 0;
  };
}

}  // namespace dape
