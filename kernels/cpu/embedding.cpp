// Placeholder so the tree links while this kernel is being written.
#include "kernels/cpu/embedding.h"
#include "common/check.h"
namespace dape::cpu {
template <class T> void embedding_forward(T*, const int32_t*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, int, int) { DAPE_CHECK(false, "pending"); }
template <class T> void embedding_backward(T*, T*, const T*, const int32_t*, int64_t, int64_t, int64_t, int64_t, int, int) { DAPE_CHECK(false, "pending"); }
#define INST(T) template void embedding_forward<T>(T*, const int32_t*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, int, int); \
  template void embedding_backward<T>(T*, T*, const T*, const int32_t*, int64_t, int64_t, int64_t, int64_t, int, int);
INST(float) INST(double)
}
