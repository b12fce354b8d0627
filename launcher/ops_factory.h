/*
 * The Ops a command runs on: the CPU, or one CUDA device, as train.device / --device and
 * train.precision / --precision say.
 *
 * Every command that builds a model takes its Ops from here, so that --device means the same
 * everywhere. cpu: CpuOps in float32 with the given threads (precision does not apply). cuda:
 * make_cuda_ops (kernels/cuda_backend.h) on one device per process, the one of the process's
 * local rank on its node modulo the devices it sees: with every GPU visible, rank r of a node
 * takes GPU r; under dape-launch --gpus-per-node (launcher/dape-rank-env) each rank sees only its
 * own device, device 0. Two ranks of a job on one device (more ranks on a node than GPUs) run, but
 * NCCL refuses them in one group, with a message naming the device.
 *
 * The local rank comes from the launcher's environment or from grouping the ranks by host name
 * (parallel/topology.h), which is a collective over the job's processes: make_process_ops is
 * called by every rank, or by none.
 */
#pragma once

#include <memory>
#include <string>

#include "core/config/config.h"
#include "kernels/ops.h"
#include "launcher/commands.h"
#include "parallel/comm.h"

namespace dape {

struct OpsRequest {
  std::string device = "cpu";      // cpu | cuda
  std::string precision = "bf16";  // bf16 | fp32, on cuda
  int threads = 0;                 // CPU threads; 0: OpenMP's default
  int local_rank = 0;              // this process's index among the job's processes on its node
  int local_size = 1;              // the job's processes on this node
};

// Throws dape::Error when the device or precision is unknown, or the CUDA device cannot be used
// (no CUDA backend in this build, no device visible: the message says which).
std::unique_ptr<Ops> make_ops(const OpsRequest& request);

// make_ops for this process of `world` (nullptr: a process alone), its local rank found when the
// device is cuda (collective over `world`).
std::unique_ptr<Ops> make_process_ops(const std::string& device, const std::string& precision,
                                      int threads, Communicator* world);

// --device and --precision, when given, replace the config's train.device and train.precision;
// validate_config then names them as where the values came from.
void apply_device_options(const GlobalOptions& global, LoadedConfig& cfg);

}  // namespace dape
