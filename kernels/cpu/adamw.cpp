// Placeholder so the tree links while this kernel is being written.
#include "kernels/cpu/adamw.h"
namespace dape::cpu {
template <class T> void adamw(T*, const T*, T*, T*, int64_t, const AdamWHyper&) { DAPE_CHECK(false, "pending"); }
template void adamw<float>(float*, const float*, float*, float*, int64_t, const AdamWHyper&);
template void adamw<double>(double*, const double*, double*, double*, int64_t, const AdamWHyper&);
}
