// Placeholder so the tree links while this kernel is being written.
#include "kernels/cpu/attention_reference.h"
namespace dape::cpu {
template <class T> void attention_reference_forward(const AttentionInputs&, T*, T*) { DAPE_CHECK(false, "pending"); }
template <class T> void attention_reference_backward(const AttentionInputs&, const T*, const T*, const T*, const AttentionGrads&) { DAPE_CHECK(false, "pending"); }
#define INST(T) template void attention_reference_forward<T>(const AttentionInputs&, T*, T*); \
  template void attention_reference_backward<T>(const AttentionInputs&, const T*, const T*, const T*, const AttentionGrads&);
INST(float) INST(double)
}
