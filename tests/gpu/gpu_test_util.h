/*
 * What the GPU tests share: skipping where no CUDA device is visible, a CUDA Ops in either
 * precision, float-representable random inputs, and the two comparisons every GPU test makes —
 * a CUDA result against a CPU one, relative to the largest magnitude of the CPU's, and a CUDA
 * result against a second run of itself, bit for bit.
 *
 * Skipping. A GPU test starts with DAPE_SKIP_WITHOUT_CUDA(): where query_cuda_devices() sees no
 * device (a build without the CUDA backend, or a machine without a GPU) the test ends as skipped
 * with "skipped: <the reason>". It is a macro because GTEST_SKIP() returns from the function it
 * is written in.
 *
 * The error measure is max_i |got_i − ref_i| / max_i |ref_i| (a tensor's worst error against its
 * own scale), so a tolerance says how many digits of the tensor's range agree. Where the reference
 * is all zeros the measure requires exact zeros. A caller may give the scale instead: a gradient
 * that is zero analytically (the softmax ignores a constant added to a row of logits, so a bias
 * added to every logit of a head gets none) holds only the rounding noise of a sum of terms that
 * cancel, and is judged against the largest gradient of the parameters it belongs with. Besides
 * the largest error, measure_error gives the root mean square of the element errors, for results
 * where a few elements may legitimately stray further than the rest (tests/gpu/attention_test.cpp).
 * A non-finite reference value (−inf in the cross-entropy slice statistics) must be matched
 * exactly; a non-finite result where the reference is finite is a failure whatever the tolerance.
 */
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda_backend.h"
#include "kernels/cuda_device.h"
#include "kernels/ops.h"
#include "tests/unit/test_util.h"

// Ends the current test as skipped, "skipped: <reason>", when this process sees no CUDA device.
#define DAPE_SKIP_WITHOUT_CUDA()                                                                 \
  do {                                                                                           \
    const ::dape::CudaDevices dape_cuda_devices_ = ::dape::query_cuda_devices();                 \
    if (dape_cuda_devices_.count == 0) GTEST_SKIP() << "skipped: " << dape_cuda_devices_.reason; \
  } while (0)

namespace dape::gpu_test {

// An Ops on CUDA device 0 computing in `precision`.
inline std::unique_ptr<Ops> cuda_ops(CudaPrecision precision) {
  CudaOpsOptions options;
  options.device = 0;
  options.precision = precision;
  return make_cuda_ops(options);
}

// n values uniform in [lo, hi), rounded to float: a float and a double backend see the same inputs.
inline std::vector<double> random_floats(size_t n, uint64_t seed, double lo = -1.0,
                                         double hi = 1.0) {
  std::vector<double> v = test::random_vector(n, seed, lo, hi);
  for (auto& x : v) x = static_cast<float>(x);
  return v;
}

// Uploads host values into a new float buffer of `ops`.
inline DeviceBuffer make(Ops& ops, Shape s, const std::vector<double>& values) {
  DeviceBuffer b = ops.float_buffer(s);
  upload(ops, b, values);
  return b;
}

inline DeviceBuffer make_ids(Ops& ops, const std::vector<int32_t>& ids) {
  DeviceBuffer b = ops.buffer(DType::i32, {static_cast<int64_t>(ids.size())});
  upload(ops, b, ids);
  return b;
}

inline std::vector<double> get(Ops& ops, const Tensor& t) {
  return download<double>(ops, t);
}

// The largest finite |value|.
inline double max_finite_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v)
    if (std::isfinite(x)) m = std::max(m, std::fabs(x));
  return m;
}

// The error of got against ref, element by element relative to `scale` (max |ref| unless given,
// > 0): its largest value (at `worst`) and its root mean square. A non-finite value that
// disagrees, or sizes that differ, make both +inf.
struct ErrorMeasure {
  double max = 0, rms = 0;
  size_t worst = 0;
};

inline ErrorMeasure measure_error(const std::vector<double>& got, const std::vector<double>& ref,
                                  double scale = 0) {
  ErrorMeasure m;
  if (got.size() != ref.size()) return {INFINITY, INFINITY, 0};
  if (scale <= 0) scale = max_finite_abs(ref);
  double sum_sq = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double e;
    if (!std::isfinite(ref[i])) {
      const bool same = std::isnan(ref[i]) ? std::isnan(got[i]) : got[i] == ref[i];
      e = same ? 0.0 : INFINITY;
    } else if (!std::isfinite(got[i])) {
      e = INFINITY;
    } else {
      const double d = std::fabs(got[i] - ref[i]);
      e = scale > 0 ? d / scale : (d > 0 ? INFINITY : 0.0);
    }
    sum_sq += e * e;
    if (e > m.max) {
      m.max = e;
      m.worst = i;
    }
  }
  m.rms = ref.empty() ? 0.0 : std::sqrt(sum_sq / static_cast<double>(ref.size()));
  return m;
}

// max |got − ref| / scale (measure_error's max).
inline double relative_error(const std::vector<double>& got, const std::vector<double>& ref,
                             size_t* worst = nullptr, double scale = 0) {
  const ErrorMeasure m = measure_error(got, ref, scale);
  if (worst) *worst = m.worst;
  return m.max;
}

// Expects relative_error(got, ref, scale) ≤ tol and returns the error (for the tests' printed
// figures).
inline double expect_close(const std::vector<double>& got, const std::vector<double>& ref,
                           double tol, const std::string& what, double scale = 0) {
  size_t worst = 0;
  const double err = relative_error(got, ref, &worst, scale);
  if (got.size() != ref.size()) {
    ADD_FAILURE() << what << ": " << got.size() << " values, the reference has " << ref.size();
    return err;
  }
  EXPECT_LE(err, tol) << what << ": max |cuda − cpu| / " << (scale > 0 ? "scale" : "max |cpu|")
                      << " = " << err << " > " << tol << "; worst element " << worst << ": cuda "
                      << got[worst] << ", cpu " << ref[worst] << " (" << got.size()
                      << " values, max |cpu| " << max_finite_abs(ref)
                      << (scale > 0 ? fmt::format(", scale {}", scale) : std::string()) << ")";
  return err;
}

// Expects a and b to hold the same bytes (two runs of one computation on one device).
template <class T>
void expect_bitwise_equal(const std::vector<T>& a, const std::vector<T>& b,
                          const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  if (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0) return;
  size_t first = 0, differing = 0;
  for (size_t i = a.size(); i-- > 0;)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      first = i;
      ++differing;
    }
  ADD_FAILURE() << what << ": two runs differ in " << differing << " of " << a.size()
                << " values; first at " << first << ": " << a[first] << " vs " << b[first];
}

}  // namespace dape::gpu_test
