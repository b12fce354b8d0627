#include "parallel/nccl/nccl_communicator.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/check.h"

namespace dape {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

ncclDataType_t nccl_type(const Tensor& t) {
  switch (t.dtype) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::bf16:
      return ncclBfloat16;
    case DType::i32:
      return ncclInt32;
  }
  DAPE_CHECK(false, "no NCCL type for {}", dtype_name(t.dtype));
  return ncclFloat32;
}

ncclConfig_t non_blocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

void check_cuda(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) fail("{} failed: {}", what, cudaGetErrorString(rc));
}

}  // namespace

// A started all-reduce: complete when the event recorded after it on the communicator's own stream
// has passed.
class NcclPendingCollective final : public PendingCollective {
 public:
  NcclPendingCollective(NcclCommunicator& comm, cudaEvent_t event, Clock::time_point start)
      : comm_(comm), event_(event), start_(start) {}
  ~NcclPendingCollective() override {
    if (!done_) {
      try {
        wait();
      } catch (const std::exception& e) {
        // Destructors do not throw; the communicator has been aborted and says so when next used.
        std::fprintf(stderr, "error: %s\n", e.what());
      }
    }
    cudaEventDestroy(event_);
  }
  NcclPendingCollective(const NcclPendingCollective&) = delete;
  NcclPendingCollective& operator=(const NcclPendingCollective&) = delete;

  bool test() override {
    if (!done_)
      done_ = comm_.poll_step(
          kWhat, [this] { return event_passed(); }, start_);
    return done_;
  }
  void wait() override {
    if (!done_)
      comm_.poll_until(
          kWhat, [this] { return event_passed(); }, start_);
    done_ = true;
  }

 private:
  static constexpr const char* kWhat = "all_reduce_sum (started)";

  bool event_passed() {
    const cudaError_t rc = cudaEventQuery(event_);
    if (rc == cudaErrorNotReady) return false;
    check_cuda(rc, "cudaEventQuery after ncclAllReduce");
    return true;
  }

  NcclCommunicator& comm_;
  cudaEvent_t event_;
  Clock::time_point start_;
  bool done_ = false;
};

NcclCommunicator::OwnStream::OwnStream() {
  check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
             "cudaStreamCreateWithFlags");
  // No destructor runs for a constructor that throws: what was made is released here.
  cudaError_t rc = cudaEventCreateWithFlags(&compute_ready, cudaEventDisableTiming);
  if (rc == cudaSuccess) rc = cudaEventCreateWithFlags(&started_done, cudaEventDisableTiming);
  if (rc != cudaSuccess) {
    if (compute_ready) cudaEventDestroy(compute_ready);
    cudaStreamDestroy(stream);
    check_cuda(rc, "cudaEventCreateWithFlags");
  }
}

NcclCommunicator::OwnStream::~OwnStream() {
  // Work still enqueued completes first; the resources are released after it.
  cudaEventDestroy(started_done);
  cudaEventDestroy(compute_ready);
  cudaStreamDestroy(stream);
}

NcclOptions NcclOptions::from_environment(const EnvironmentLookup& env) {
  NcclOptions options;
  if (const char* v = env("DAPE_NCCL_TIMEOUT_S")) {
    char* end = nullptr;
    const double t = std::strtod(v, &end);
    if (end == v || *end != '\0' || !std::isfinite(t) || t <= 0)
      fail("environment variable DAPE_NCCL_TIMEOUT_S='{}' is not a number of seconds > 0", v);
    options.timeout_s = t;
  }
  return options;
}

NcclCommunicator::NcclCommunicator(Communicator& host, cudaStream_t stream, NcclOptions options)
    : host_(&host), stream_(stream), options_(options), rank_(host.rank()), size_(host.size()) {
  check_cuda(cudaGetDevice(&device_), "cudaGetDevice");
  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  std::string bytes;
  if (rank_ == 0) {
    const ncclResult_t rc = ncclGetUniqueId(&id);
    if (rc != ncclSuccess) fail("ncclGetUniqueId failed: {}", ncclGetErrorString(rc));
    bytes.assign(reinterpret_cast<const char*>(&id), sizeof id);
  }
  bytes = host.broadcast_bytes(bytes, 0);
  DAPE_CHECK(bytes.size() == sizeof id, "NCCL unique id of {} bytes, expected {}", bytes.size(),
             sizeof id);
  std::memcpy(&id, bytes.data(), sizeof id);
  ncclConfig_t config = non_blocking_config();
  settle(ncclCommInitRankConfig(&comm_, size_, id, rank_, &config), "ncclCommInitRankConfig");
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Communicator> host, cudaStream_t stream,
                                   NcclOptions options)
    : NcclCommunicator(*host, stream, options) {
  owned_host_ = std::move(host);  // host_ already points at it
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, std::unique_ptr<Communicator> host,
                                   cudaStream_t stream, NcclOptions options, int device)
    : comm_(comm),
      owned_host_(std::move(host)),
      host_(owned_host_.get()),
      stream_(stream),
      options_(options),
      device_(device),
      rank_(host_->rank()),
      size_(host_->size()) {
  // A non-blocking split completes in the child: wait for it there.
  poll_until(
      "ncclCommSplit", [] { return true; }, Clock::now());
  int nccl_rank = -1, nccl_size = -1;
  settle(ncclCommUserRank(comm_, &nccl_rank), "ncclCommUserRank");
  settle(ncclCommCount(comm_, &nccl_size), "ncclCommCount");
  DAPE_CHECK(nccl_rank == rank_ && nccl_size == size_,
             "ncclCommSplit gave rank {} of {}, the host split rank {} of {}", nccl_rank, nccl_size,
             rank_, size_);
}

NcclCommunicator::~NcclCommunicator() {
  if (!comm_ || aborted_) return;  // ncclCommAbort has freed an aborted one
  try {
    settle(ncclCommFinalize(comm_), "ncclCommFinalize");
    ncclCommDestroy(comm_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());  // aborted by settle(); destructors do not throw
  }
}

void NcclCommunicator::check_usable(const char* what) const {
  if (aborted_)
    fail("NCCL {} on rank {} of {}: the communicator was aborted after an earlier failure", what,
         rank_, size_);
}

void NcclCommunicator::abort_and_fail(const char* what, const std::string& why) {
  std::string detail;
  if (comm_ && !aborted_) {
    const char* last = ncclGetLastError(comm_);
    if (last && *last) detail = fmt::format(" ({})", last);
    ncclCommAbort(comm_);
  }
  aborted_ = true;
  fail("NCCL {} on rank {} of {}: {}{}; the communicator was aborted", what, rank_, size_, why,
       detail);
}

bool NcclCommunicator::poll_step(const char* what, const std::function<bool()>& done,
                                 Clock::time_point start) {
  check_usable(what);
  ncclResult_t state = ncclSuccess;
  const ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
  if (rc != ncclSuccess) abort_and_fail(what, ncclGetErrorString(rc));
  if (state != ncclSuccess && state != ncclInProgress)
    abort_and_fail(what, ncclGetErrorString(state));
  if (state == ncclSuccess && done()) return true;
  if (seconds_since(start) > options_.timeout_s)
    abort_and_fail(what, fmt::format("not complete after {} s (the timeout, DAPE_NCCL_TIMEOUT_S): "
                                     "another rank has probably failed or stopped",
                                     options_.timeout_s));
  return false;
}

void NcclCommunicator::poll_until(const char* what, const std::function<bool()>& done,
                                  Clock::time_point start) {
  // Spin briefly (collectives of a few microseconds), then sleep between looks.
  for (int looks = 0; !poll_step(what, done, start); ++looks) {
    if (looks < 1000) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
}

void NcclCommunicator::settle(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess && rc != ncclInProgress) abort_and_fail(what, ncclGetErrorString(rc));
  poll_until(
      what, [] { return true; }, Clock::now());
}

void NcclCommunicator::wait_for_stream(cudaStream_t stream, const char* what) {
  poll_until(
      what,
      [this, stream, what] {
        const cudaError_t rc = cudaStreamQuery(stream);
        if (rc == cudaErrorNotReady) return false;
        if (rc != cudaSuccess) abort_and_fail(what, cudaGetErrorString(rc));
        return true;
      },
      Clock::now());
}

void NcclCommunicator::order_after_started() {
  check_cuda(cudaEventRecord(own_.started_done, own_.stream), "cudaEventRecord on the NCCL stream");
  check_cuda(cudaStreamWaitEvent(stream_, own_.started_done, 0),
             "cudaStreamWaitEvent (compute stream after the started collectives)");
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  DAPE_CHECK(color >= 0, "split: color {} is negative", color);
  check_usable("split");
  auto host_child = host_->split(color, key);
  ncclConfig_t config = non_blocking_config();
  ncclComm_t child = nullptr;
  // A non-blocking split completes in the child, whose constructor waits for it.
  const ncclResult_t rc = ncclCommSplit(comm_, color, key, &child, &config);
  if (rc != ncclSuccess && rc != ncclInProgress)
    abort_and_fail("ncclCommSplit", ncclGetErrorString(rc));
  return std::unique_ptr<Communicator>(
      new NcclCommunicator(child, std::move(host_child), stream_, options_, device_));
}

void NcclCommunicator::all_reduce_sum(const Tensor& x) {
  check_usable("all_reduce_sum");
  order_after_started();
  settle(ncclAllReduce(x.data, x.data, static_cast<size_t>(x.numel()), nccl_type(x), ncclSum, comm_,
                       stream_),
         "all_reduce_sum");
  wait_for_stream(stream_, "all_reduce_sum");
}

std::unique_ptr<PendingCollective> NcclCommunicator::start_all_reduce_sum(const Tensor& x) {
  DAPE_CHECK(x.dtype == DType::f32 || x.dtype == DType::f64,
             "start_all_reduce_sum takes float32 or float64, not {}", dtype_name(x.dtype));
  check_usable("start_all_reduce_sum");
  const auto start = Clock::now();
  // The collective reads what the work enqueued on the compute stream so far writes: the own
  // stream waits for it, on the device; the compute stream goes on at once.
  check_cuda(cudaEventRecord(own_.compute_ready, stream_), "cudaEventRecord on the compute stream");
  check_cuda(cudaStreamWaitEvent(own_.stream, own_.compute_ready, 0),
             "cudaStreamWaitEvent (NCCL stream after the compute stream)");
  settle(ncclAllReduce(x.data, x.data, static_cast<size_t>(x.numel()), nccl_type(x), ncclSum, comm_,
                       own_.stream),
         "start_all_reduce_sum");
  cudaEvent_t event = nullptr;
  check_cuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate");
  const cudaError_t rc = cudaEventRecord(event, own_.stream);
  if (rc != cudaSuccess) {
    cudaEventDestroy(event);
    check_cuda(rc, "cudaEventRecord after ncclAllReduce");
  }
  return std::make_unique<NcclPendingCollective>(*this, event, start);
}

void NcclCommunicator::all_reduce_max(const Tensor& x) {
  check_usable("all_reduce_max");
  order_after_started();
  settle(ncclAllReduce(x.data, x.data, static_cast<size_t>(x.numel()), nccl_type(x), ncclMax, comm_,
                       stream_),
         "all_reduce_max");
  wait_for_stream(stream_, "all_reduce_max");
}

void NcclCommunicator::all_gather(const Tensor& out, const Tensor& in) {
  DAPE_CHECK(out.dtype == in.dtype && out.numel() == in.numel() * size_,
             "all_gather: {} elements from each of {} ranks into {}", in.numel(), size_,
             out.numel());
  check_usable("all_gather");
  order_after_started();
  settle(ncclAllGather(in.data, out.data, static_cast<size_t>(in.numel()), nccl_type(in), comm_,
                       stream_),
         "all_gather");
  wait_for_stream(stream_, "all_gather");
}

void NcclCommunicator::reduce_scatter_sum(const Tensor& out, const Tensor& in) {
  DAPE_CHECK(out.dtype == in.dtype && in.numel() == out.numel() * size_,
             "reduce_scatter: {} elements over {} ranks into {}", in.numel(), size_, out.numel());
  check_usable("reduce_scatter_sum");
  order_after_started();
  settle(ncclReduceScatter(in.data, out.data, static_cast<size_t>(out.numel()), nccl_type(out),
                           ncclSum, comm_, stream_),
         "reduce_scatter_sum");
  wait_for_stream(stream_, "reduce_scatter_sum");
}

void NcclCommunicator::broadcast(const Tensor& x, int root) {
  DAPE_CHECK(root >= 0 && root < size_, "broadcast from rank {} of {}", root, size_);
  check_usable("broadcast");
  order_after_started();
  settle(ncclBroadcast(x.data, x.data, static_cast<size_t>(x.numel()), nccl_type(x), root, comm_,
                       stream_),
         "broadcast");
  wait_for_stream(stream_, "broadcast");
}

void NcclCommunicator::barrier() {
  check_usable("barrier");
  wait_for_stream(own_.stream, "barrier");
  wait_for_stream(stream_, "barrier");
  host_->barrier();
}

void NcclCommunicator::abort(int code) {
  if (comm_ && !aborted_) ncclCommAbort(comm_);
  aborted_ = true;
  host_->abort(code);
  std::exit(code);  // host_->abort does not return; the compiler cannot see that through a call
}

}  // namespace dape
