// Placeholder so the tree links while this kernel is being written.
#include "kernels/cpu/rope.h"
namespace dape::cpu {
template <class T> void rope_forward(T*, T*, const AttentionShape&, int, double) { DAPE_CHECK(false, "pending"); }
template <class T> void rope_backward(T*, T*, const AttentionShape&, int, double) { DAPE_CHECK(false, "pending"); }
#define INST(T) template void rope_forward<T>(T*, T*, const AttentionShape&, int, double); \
  template void rope_backward<T>(T*, T*, const AttentionShape&, int, double);
INST(float) INST(double)
}
