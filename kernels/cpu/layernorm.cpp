// Placeholder so the tree links while this kernel is being written.
#include "kernels/cpu/layernorm.h"
#include "common/check.h"
namespace dape::cpu {
template <class T> void layernorm_forward(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t) { DAPE_CHECK(false, "pending"); }
template <class T> void layernorm_backward(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t, int64_t) { DAPE_CHECK(false, "pending"); }
#define INST(T) template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t); \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t, int64_t);
INST(float) INST(double)
}
