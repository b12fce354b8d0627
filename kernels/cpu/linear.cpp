// Placeholder so the tree links while this kernel is being written.
#include "kernels/cpu/linear.h"
#include "common/check.h"
namespace dape::cpu {
template <class T> void linear_forward(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t) { DAPE_CHECK(false, "pending"); }
template <class T> void linear_backward(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, bool) { DAPE_CHECK(false, "pending"); }
#define INST(T) template void linear_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t); \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, bool);
INST(float) INST(double)
}
