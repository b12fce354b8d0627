#include "launcher/ops_factory.h"

#include "common/check.h"
#include "common/log.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda_device.h"
#include "parallel/topology.h"

namespace dape {

std::unique_ptr<Ops> make_ops(const OpsRequest& request) {
  if (request.device == "cpu") return std::make_unique<CpuOps>(DType::f32, request.threads);
  if (request.device != "cuda")
    fail("device '{}' is not one of cpu|cuda (--device, train.device)", request.device);
  CudaOpsOptions options;
  if (!parse_cuda_precision(request.precision, &options.precision))
    fail("precision '{}' is not one of bf16|fp32 (--precision, train.precision)",
         request.precision);
  DAPE_CHECK(request.local_rank >= 0 && request.local_rank < request.local_size,
             "local rank {} of {}", request.local_rank, request.local_size);
  const CudaDevices cuda = query_cuda_devices();
  if (cuda.count == 0)
    fail("device cuda cannot be used: {}; --device cpu runs on the CPU", cuda.reason);
  options.device = request.local_rank % cuda.count;
  if (request.local_size > cuda.count && cuda.count > 1)
    DAPE_LOG_WARN(
        "{} processes of this job run on this node and see {} CUDA devices: local rank {} takes "
        "device {}, shared with other ranks (NCCL refuses two ranks of one group on one device); "
        "start one rank per GPU",
        request.local_size, cuda.count, request.local_rank, options.device);
  std::unique_ptr<Ops> ops = make_cuda_ops(options);
  DAPE_LOG_INFO("device: CUDA device {} of {} (local rank {} of {}), {} precision", options.device,
                cuda.count, request.local_rank, request.local_size,
                cuda_precision_name(options.precision));
  return ops;
}

std::unique_ptr<Ops> make_process_ops(const std::string& device, const std::string& precision,
                                      int threads, Communicator* world) {
  OpsRequest request;
  request.device = device;
  request.precision = precision;
  request.threads = threads;
  if (device == "cuda" && world && world->size() > 1) {
    const Topology where = make_topology(*world, /*tp=*/1);
    request.local_rank = where.local_rank;
    request.local_size = where.local_size;
  }
  return make_ops(request);
}

void apply_device_options(const GlobalOptions& global, LoadedConfig& cfg) {
  if (!global.device.empty()) {
    cfg.msg.mutable_train()->set_device(global.device);
    cfg.origin["train.device"] = "--device " + global.device;
  }
  if (!global.precision.empty()) {
    cfg.msg.mutable_train()->set_precision(global.precision);
    cfg.origin["train.precision"] = "--precision " + global.precision;
  }
}

}  // namespace dape
