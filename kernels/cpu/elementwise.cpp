// Placeholder so the tree links while this kernel is being written.
#include "kernels/cpu/elementwise.h"
#include "common/check.h"
namespace dape::cpu {
template <class T> void fill(T*, int64_t, T) { DAPE_CHECK(false, "pending"); }
template <class T> void scale(T*, int64_t, T) { DAPE_CHECK(false, "pending"); }
template <class T> void add(T*, const T*, const T*, int64_t) { DAPE_CHECK(false, "pending"); }
template <class T> void clamp_min(T*, int64_t, T) { DAPE_CHECK(false, "pending"); }
template <class T> double sum_squares(const T*, int64_t) { DAPE_CHECK(false, "pending"); }
template <class T> void gelu_forward(T*, const T*, int64_t) { DAPE_CHECK(false, "pending"); }
template <class T> void gelu_backward(T*, const T*, const T*, int64_t) { DAPE_CHECK(false, "pending"); }
#define INST(T) template void fill<T>(T*, int64_t, T); template void scale<T>(T*, int64_t, T); \
  template void add<T>(T*, const T*, const T*, int64_t); template void clamp_min<T>(T*, int64_t, T); \
  template double sum_squares<T>(const T*, int64_t); template void gelu_forward<T>(T*, const T*, int64_t); \
  template void gelu_backward<T>(T*, const T*, const T*, int64_t);
INST(float) INST(double)
}
