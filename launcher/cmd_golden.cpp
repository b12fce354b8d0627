// `dape golden`: checks attention implementations against golden files
// (core/golden/attention_golden.h), on the device --device names. Exit status 1 if any tensor is
// past tolerance. On cuda the precision is fp32 unless --precision says otherwise: the golden
// tolerances are those of fp32 arithmetic, which bf16 operands do not meet.
#include <cstdio>

#include "common/log.h"
#include "core/golden/attention_golden.h"
#include "launcher/commands.h"
#include "launcher/ops_factory.h"

namespace dape {

CommandFn add_golden_command(CLI::App& app, const GlobalOptions& global) {
  struct Args {
    std::vector<std::string> files;
    std::string attention = "all";
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "golden",
      "Check attention implementations against golden files (forward and every gradient)");
  cmd->add_option("files", args->files, "Golden .safetensors files")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--attention", args->attention, "Which implementation: reference|fused|all")
      ->capture_default_str();
  return [args, &global]() {
    std::vector<AttentionImpl> impls;
    if (args->attention == "reference" || args->attention == "all")
      impls.push_back(AttentionImpl::reference);
    if (args->attention == "fused" || args->attention == "all")
      impls.push_back(AttentionImpl::fused);
    if (impls.empty()) fail("--attention: '{}' is not one of reference|fused|all", args->attention);
    const std::string device = global.device.empty() ? "cpu" : global.device;
    const std::string precision = global.precision.empty() ? "fp32" : global.precision;
    if (device == "cuda" && precision == "bf16")
      DAPE_LOG_WARN(
          "--precision bf16: the golden tolerances are those of fp32 arithmetic; bf16 operands are "
          "expected to exceed them");
    const std::unique_ptr<Ops> ops_owner =
        make_process_ops(device, precision, global.threads, global.world);
    Ops& ops = *ops_owner;
    int failed = 0, checked = 0;
    for (AttentionImpl impl : impls) {
      for (const auto& f : args->files) {
        if (!ops.has_attention(impl)) {
          std::printf("%s: %s attention is not available on %s, not checked\n", f.c_str(),
                      impl == AttentionImpl::fused ? "fused" : "reference", ops.name().c_str());
          continue;
        }
        GoldenResult r = check_attention_golden(f, ops, impl);
        std::printf("%s", format_golden_result(r).c_str());
        ++checked;
        if (!r.pass) ++failed;
      }
    }
    std::printf("%d of %d checks passed\n", checked - failed, checked);
    return failed == 0 && checked > 0 ? 0 : 1;
  };
}

}  // namespace dape
