// The NCCL communicator on one rank, on device buffers: all_reduce (blocking and started),
// all_reduce_max, all_gather, reduce_scatter, broadcast and split, each checked against the values
// uploaded (over one rank every collective is the identity or a copy, which still moves the
// data through NCCL). The started all-reduce's stream order: it waits for the compute work
// enqueued before it, later compute work does not wait for it, and a blocking collective after
// it waits for it (streams held by a host function until the test releases them). Skips with
// the reason where no CUDA device is visible; in builds without CUDA the NCCL communicator is not
// compiled and the test says so.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda_device.h"

#if defined(DAPE_WITH_CUDA)
#include <cuda_runtime.h>

#include "parallel/nccl/nccl_communicator.h"
#endif

namespace dape {
namespace {

#if defined(DAPE_WITH_CUDA)

void check(cudaError_t rc, const char* what) {
  ASSERT_EQ(rc, cudaSuccess) << what << ": " << cudaGetErrorString(rc);
}

// A device buffer of T holding `values`.
template <class T>
class DeviceVector {
 public:
  explicit DeviceVector(const std::vector<T>& values) : n_(values.size()) {
    check(cudaMalloc(&data_, n_ * sizeof(T)), "cudaMalloc");
    check(cudaMemcpy(data_, values.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  ~DeviceVector() { cudaFree(data_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  Tensor tensor() const { return Tensor(data_, dtype_of<T>(), Shape{static_cast<int64_t>(n_)}); }
  void* data() const { return data_; }
  size_t bytes() const { return n_ * sizeof(T); }
  std::vector<T> download() const {
    std::vector<T> out(n_);
    check(cudaMemcpy(out.data(), data_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return out;
  }

 private:
  void* data_ = nullptr;
  size_t n_;
};

TEST(NcclCommunicator, CollectivesOnOneRank) {
  const CudaDevices d = query_cuda_devices();
  if (d.count == 0) GTEST_SKIP() << "skipped: " << d.reason;
  cudaStream_t stream = nullptr;
  check(cudaStreamCreate(&stream), "cudaStreamCreate");
  {
    LocalCommunicator host;
    NcclCommunicator comm(host, stream, NcclOptions{30});
    EXPECT_EQ(comm.rank(), 0);
    EXPECT_EQ(comm.size(), 1);
    EXPECT_EQ(comm.name(), "nccl");

    const std::vector<float> values = {1.5f, -2.25f, 3.0f, 1e-3f};
    DeviceVector<float> x(values);
    comm.all_reduce_sum(x.tensor());
    EXPECT_EQ(x.download(), values);
    comm.all_reduce_max(x.tensor());
    EXPECT_EQ(x.download(), values);
    comm.broadcast(x.tensor(), 0);
    EXPECT_EQ(x.download(), values);

    const std::vector<double> dvalues = {0.125, -7.0, 1e300};
    DeviceVector<double> y(dvalues);
    auto pending = comm.start_all_reduce_sum(y.tensor());
    while (!pending->test()) {
    }
    pending->wait();
    EXPECT_EQ(y.download(), dvalues);

    // Out of place: the output receives the input.
    DeviceVector<float> gathered(std::vector<float>(values.size(), 0.0f));
    comm.all_gather(gathered.tensor(), x.tensor());
    EXPECT_EQ(gathered.download(), values);
    DeviceVector<float> scattered(std::vector<float>(values.size(), 0.0f));
    comm.reduce_scatter_sum(scattered.tensor(), x.tensor());
    EXPECT_EQ(scattered.download(), values);

    auto sub = comm.split(0, 0);
    EXPECT_EQ(sub->size(), 1);
    DeviceVector<double> z(dvalues);
    sub->all_reduce_sum(z.tensor());
    EXPECT_EQ(z.download(), dvalues);
    sub->barrier();
    comm.barrier();
    EXPECT_EQ(comm.all_reduce_sum(2.5), 2.5);  // host data through the host communicator
  }
  check(cudaStreamDestroy(stream), "cudaStreamDestroy");
}

// Holds a stream: a host function enqueued on it waits until open() is called, so the work
// enqueued after it cannot start before then. Opened at the latest when destroyed.
class StreamGate {
 public:
  explicit StreamGate(cudaStream_t stream) {
    check(cudaLaunchHostFunc(stream, &StreamGate::hold, this), "cudaLaunchHostFunc");
  }
  ~StreamGate() { open(); }
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;
  void open() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      open_ = true;
    }
    opened_.notify_all();
  }

 private:
  static void CUDART_CB hold(void* self) {
    auto* gate = static_cast<StreamGate*>(self);
    std::unique_lock<std::mutex> lock(gate->mutex_);
    gate->opened_.wait(lock, [gate] { return gate->open_; });
  }
  std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = false;
};

using Clock = std::chrono::steady_clock;

// Whether `done` holds within `seconds`, looking every millisecond.
template <class Done>
bool becomes_true(Done done, double seconds) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

TEST(NcclCommunicator, StartedAllReduceFollowsTheComputeStream) {
  const CudaDevices d = query_cuda_devices();
  if (d.count == 0) GTEST_SKIP() << "skipped: " << d.reason;
  cudaStream_t compute = nullptr;
  check(cudaStreamCreate(&compute), "cudaStreamCreate");
  {
    LocalCommunicator host;
    NcclCommunicator comm(host, compute, NcclOptions{30});
    ASSERT_NE(comm.collective_stream(), comm.stream());
    const std::vector<float> values = {0.5f, -1.0f, 2.0f, 4.0f, -8.0f};

    // Compute work enqueued before the start is held: the all-reduce must not complete.
    {
      DeviceVector<float> x(values);
      StreamGate gate(compute);
      auto pending = comm.start_all_reduce_sum(x.tensor());
      EXPECT_FALSE(becomes_true([&] { return pending->test(); }, 0.3))
          << "the started all-reduce completed before the compute work enqueued ahead of it";
      gate.open();
      pending->wait();
      EXPECT_TRUE(pending->test());
      EXPECT_EQ(x.download(), values);
    }

    // The collective is held on its own stream: compute work enqueued after the start runs.
    {
      DeviceVector<float> x(values);
      DeviceVector<float> y(values);
      StreamGate gate(comm.collective_stream());
      auto pending = comm.start_all_reduce_sum(x.tensor());
      check(cudaMemsetAsync(y.data(), 0, y.bytes(), compute), "cudaMemsetAsync");
      cudaEvent_t computed = nullptr;
      check(cudaEventCreateWithFlags(&computed, cudaEventDisableTiming), "cudaEventCreate");
      check(cudaEventRecord(computed, compute), "cudaEventRecord");
      EXPECT_TRUE(becomes_true([&] { return cudaEventQuery(computed) == cudaSuccess; }, 10))
          << "compute work enqueued after a started all-reduce waited for it";
      EXPECT_FALSE(pending->test()) << "the all-reduce completed while its stream was held";
      gate.open();
      pending->wait();
      check(cudaEventDestroy(computed), "cudaEventDestroy");
      EXPECT_EQ(x.download(), values);
      EXPECT_EQ(y.download(), std::vector<float>(values.size(), 0.0f));
    }

    // A blocking collective after a started one runs after it: it cannot return before the
    // started one's stream is released.
    {
      DeviceVector<float> x(values);
      DeviceVector<float> y(values);
      StreamGate gate(comm.collective_stream());
      auto pending = comm.start_all_reduce_sum(x.tensor());
      std::atomic<bool> released{false};
      std::thread opener([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        released = true;
        gate.open();
      });
      comm.all_reduce_sum(y.tensor());
      EXPECT_TRUE(released) << "a blocking collective completed before the started one";
      opener.join();
      pending->wait();
      EXPECT_EQ(x.download(), values);
      EXPECT_EQ(y.download(), values);
    }
  }
  check(cudaStreamDestroy(compute), "cudaStreamDestroy");
}

TEST(NcclOptions, TimeoutFromTheEnvironment) {
  const auto env = [](const char* value) {
    return [value](const char* name) -> const char* {
      return std::string(name) == "DAPE_NCCL_TIMEOUT_S" ? value : nullptr;
    };
  };
  EXPECT_EQ(NcclOptions::from_environment(env(nullptr)).timeout_s, 300);
  EXPECT_EQ(NcclOptions::from_environment(env("12.5")).timeout_s, 12.5);
  for (const char* bad : {"", "0", "-3", "ten", "5s", "inf"}) {
    try {
      NcclOptions::from_environment(env(bad));
      ADD_FAILURE() << "accepted DAPE_NCCL_TIMEOUT_S='" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("DAPE_NCCL_TIMEOUT_S='" + std::string(bad) + "'"),
                std::string::npos)
          << e.what();
    }
  }
}

#else

TEST(NcclCommunicator, CollectivesOnOneRank) {
  GTEST_SKIP() << "skipped: this build has no CUDA backend (nvcc was not found or "
                  "DAPE_CUDA=OFF), so no NCCL communicator";
}

#endif

}  // namespace
}  // namespace dape
