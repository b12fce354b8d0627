/*
 * The communicator for tensors in CUDA device memory: NCCL, bootstrapped over a host
 * communicator (parallel/nccl/nccl_communicator.h).
 *
 * MPI moves host buffers; handed device pointers it would read them as host memory unless it was
 * built CUDA-aware, which cannot be relied on. So the groups whose collectives move a CUDA Ops's
 * tensors run over NCCL, while their host data (scalars, counts, byte strings) and abort still go
 * through the host group. Callable in every build: without CUDA it throws a dape::Error saying
 * so, so that callers need no #ifdef.
 */
#pragma once

#include <memory>

#include "parallel/comm.h"

namespace dape {

// An NCCL communicator over the ranks of `host` (collective over them; it takes `host` over for
// its host data). `cuda_stream` is the compute stream (a cudaStream_t) of the Ops whose tensors it
// moves, on the current CUDA device: blocking collectives run on it, started all-reduces on the
// communicator's own stream after it. The timeout comes from DAPE_NCCL_TIMEOUT_S (NcclOptions).
std::unique_ptr<Communicator> make_device_communicator(std::unique_ptr<Communicator> host,
                                                       void* cuda_stream);

}  // namespace dape
