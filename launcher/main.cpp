/*
 * `dape`: one binary, subcommands for every stage of the work (DESIGN.md §8).
 *
 * Exit status: 0 success; 1 bad input or a failed check (the message says what and where);
 * 2 bad command-line usage; 3 an internal error (a bug: please report the message).
 */
#include <omp.h>

#include <cstdio>
#include <map>

#include "common/check.h"
#include "common/log.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cuda_device.h"
#include "launcher/commands.h"
#include "parallel/comm.h"

#ifndef DAPE_VERSION
#define DAPE_VERSION "dev"
#endif

namespace {
// "[rank 3] " in a job of several processes, else "".
std::string rank_prefix(const dape::Communicator* world) {
  return world && world->size() > 1 ? fmt::format("[rank {}] ", world->rank()) : "";
}
}  // namespace

int main(int argc, char** argv) {
  using namespace dape;
  CLI::App app{"dape: train transformers with data-adaptive positional encoding (DAPE)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] {
    CudaDevices cuda = query_cuda_devices();
    std::string v = std::string("dape ") + DAPE_VERSION +
                    "\nCPU threads: " + std::to_string(omp_get_max_threads()) + "\nCPU " +
                    cpu::describe_cpu_isa();
    v += cuda.count > 0 ? "\nCUDA devices:\n" + cuda.description : "\nCUDA: " + cuda.reason;
    return v;
  });
  GlobalOptions global;
  app.add_option("--log-level", global.log_level, "trace|debug|info|warn|error")
      ->capture_default_str();
  app.add_option("--threads", global.threads, "CPU threads (0: OMP_NUM_THREADS or all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", global.device,
                 "cpu|cuda: where the model runs (default: the config's train.device, else cpu). "
                 "On cuda each process takes one GPU, chosen by its local rank on the node, and "
                 "under mpirun the data- and tensor-parallel collectives run over NCCL")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--precision", global.precision,
                 "bf16|fp32 on cuda (default: the config's train.precision, else bf16; golden: "
                 "fp32): bf16 runs GEMMs and attention on tensor cores with bf16 operands and fp32 "
                 "accumulation, fp32 computes in fp32; every tensor is fp32 in memory either way")
      ->check(CLI::IsMember({"bf16", "fp32"}));

  // Subcommand name -> what it runs (each add_* registers the subcommand of that name).
  std::map<std::string, CommandFn> commands = {
      {"prepare", add_prepare_command(app, global)},
      {"train", add_train_command(app, global)},
      {"eval", add_eval_command(app, global)},
      {"generate", add_generate_command(app, global)},
      {"golden", add_golden_command(app, global)},
      {"inspect", add_inspect_command(app, global)},
      {"export", add_export_command(app, global)},
      {"attention-map", add_attention_map_command(app, global)},
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  // Under mpirun every process runs this; only rank 0 prints (warnings and errors excepted).
  std::unique_ptr<Communicator> world;
  auto fail_everywhere = [&](int code) {
    if (world && world->size() > 1) world->abort(code);  // no rank left waiting for this one
    return code;
  };
  try {
    world = make_world_communicator();
    global.world = world.get();
    init_logging(global.log_level);
    set_log_rank(world->rank(), world->size(), false);
    if (global.threads > 0) omp_set_num_threads(global.threads);
    for (CLI::App* sub : app.get_subcommands()) return commands.at(sub->get_name())();
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "%serror: %s\n", rank_prefix(world.get()).c_str(), e.what());
    return fail_everywhere(1);
  } catch (const InternalError& e) {
    std::fprintf(stderr, "%s%s\n", rank_prefix(world.get()).c_str(), e.what());
    return fail_everywhere(3);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%serror: out of memory\n", rank_prefix(world.get()).c_str());
    return fail_everywhere(1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%sinternal error: %s\n", rank_prefix(world.get()).c_str(), e.what());
    return fail_everywhere(3);
  }
}
