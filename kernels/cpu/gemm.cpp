// Placeholder so the tree links while this kernel is being written.
#include "kernels/cpu/gemm.h"
#include "common/check.h"
namespace dape::cpu {
template <class T>
void gemm(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, T*, int64_t) { DAPE_CHECK(false, "gemm: pending"); }
template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*, int64_t, double, double*, int64_t);
}
