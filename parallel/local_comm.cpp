#include <cstdlib>
#include <cstring>

#include "parallel/comm.h"

namespace dape {

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
