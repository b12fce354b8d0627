// `dape inspect`: says what a token shard, dataset or checkpoint holds and verifies checksums.
#include <cstdio>

#include "common/file_util.h"
#include "core/checkpoint/checkpoint.h"
#include "core/data/inspect_data.h"
#include "launcher/commands.h"

namespace dape {

CommandFn add_inspect_command(CLI::App& app, const GlobalOptions&) {
  struct Args {
    std::string path;
    bool no_verify = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "inspect", "Show what a token shard, dataset or checkpoint holds; verify checksums");
  cmd->add_option("path", args->path,
                  "A .tok shard, a dataset directory, or a checkpoint/run directory")
      ->required();
  cmd->add_flag("--no-verify", args->no_verify, "Skip checksum verification");
  return [args]() {
    const std::string& p = args->path;
    const bool verify = !args->no_verify;
    if (!path_exists(p)) fail("'{}' does not exist", p);
    auto report = [&]() -> std::string {
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
