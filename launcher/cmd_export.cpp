// `dape export`: a checkpoint's parameters as one safetensors file with GPT-NeoX-like names;
// see core/checkpoint/model_export.h.
#include <cstdio>

#include "core/checkpoint/model_export.h"
#include "kernels/cpu/cpu_ops.h"
#include "launcher/commands.h"

namespace dape {

CommandFn add_export_command(CLI::App& app, const GlobalOptions& global) {
  struct Args {
    std::string checkpoint, out;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Write a checkpoint's model as one safetensors file (GPT-NeoX-like names)");
  cmd->add_option("--checkpoint", args->checkpoint,
                  "A checkpoint step directory or a run directory (its newest checkpoint)")
      ->required();
  cmd->add_option("--out", args->out, "The safetensors file to write")->required();
  return [args, &global]() {
    CpuOps ops(DType::f32, global.threads > 0 ? global.threads : 1);
    std::printf("%s\n", export_checkpoint(args->checkpoint, args->out, ops).c_str());
    return 0;
  };
}

}  // namespace dape
