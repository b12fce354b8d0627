#include <cstdlib>
#include <cstring>

#include "parallel/comm.h"

namespace dape {

namespace {

// Over one rank a collective has nothing to wait for: it is complete when it starts.
class CompletedCollective final : public PendingCollective {
 public:
  bool test() override { return true; }
  void wait() override {}
};

// The element types every implementation reduces.
void check_float(const Tensor& x, const char* what) {
  DAPE_CHECK(x.dtype == DType::f32 || x.dtype == DType::f64, "{} takes float32 or float64, not {}",
             what, dtype_name(x.dtype));
}

}  // namespace

std::unique_ptr<Communicator> LocalCommunicator::split(int color, int key) {
  DAPE_CHECK(color >= 0, "split: color {} is negative", color);
  return std::make_unique<LocalCommunicator>();
}

std::unique_ptr<PendingCollective> LocalCommunicator::start_all_reduce_sum(const Tensor& x) {
  check_float(x, "start_all_reduce_sum");
  return std::make_unique<CompletedCollective>();
}

// Host memory only: the local communicator serves the CPU backend.
void LocalCommunicator::all_gather(const Tensor& out, const Tensor& in) {
  DAPE_CHECK(out.nbytes() == in.nbytes(), "all_gather over 1 rank: {} vs {}", out.shape.str(),
             in.shape.str());
  if (out.data != in.data) std::memcpy(out.data, in.data, in.nbytes());
}

void LocalCommunicator::reduce_scatter_sum(const Tensor& out, const Tensor& in) {
  DAPE_CHECK(out.nbytes() == in.nbytes(), "reduce_scatter over 1 rank: {} vs {}", out.shape.str(),
             in.shape.str());
  if (out.data != in.data) std::memcpy(out.data, in.data, in.nbytes());
}

void LocalCommunicator::abort(int code) {
  std::exit(code);
}

}  // namespace dape
