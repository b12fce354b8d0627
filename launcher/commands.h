/*
 * The `dape` command's subcommands. Each file cmd_<name>.cpp registers one subcommand on the
 * CLI11 app; the callback it installs runs when that subcommand is chosen. Options shared by all
 * (log level, threads, device, precision) are in GlobalOptions.
 */
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace dape {

class Communicator;

struct GlobalOptions {
  std::string log_level = "info";
  int threads = 0;  // 0: OMP_NUM_THREADS or every core
  // "cpu" | "cuda"; "": the config's train.device (cpu for commands without a config).
  std::string device;
  // "bf16" | "fp32", used on cuda; "": the config's train.precision.
  std::string precision;
  // Every process of the job (MPI's world under mpirun, else a group of one); set before a
  // subcommand runs.
  Communicator* world = nullptr;
};

// What a subcommand runs; returns the process exit status.
using CommandFn = std::function<int()>;

CommandFn add_prepare_command(CLI::App& app, const GlobalOptions& global);
CommandFn add_train_command(CLI::App& app, const GlobalOptions& global);
CommandFn add_eval_command(CLI::App& app, const GlobalOptions& global);
CommandFn add_generate_command(CLI::App& app, const GlobalOptions& global);
CommandFn add_golden_command(CLI::App& app, const GlobalOptions& global);
CommandFn add_inspect_command(CLI::App& app, const GlobalOptions& global);
CommandFn add_export_command(CLI::App& app, const GlobalOptions& global);
CommandFn add_attention_map_command(CLI::App& app, const GlobalOptions& global);

}  // namespace dape
