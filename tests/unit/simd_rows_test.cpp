// The row-panel kernels of kernels/cpu/simd_rows.h against plain loops, for sizes that hit every
// register-tile shape and remainder, in float and double; and the vectorized exp against std::exp.
#include "kernels/cpu/simd_rows.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "tests/unit/test_util.h"

namespace dape {
namespace {

namespace simd = cpu::simd;

template <class T>
std::vector<T> random_panel(size_t n, uint64_t seed) {
  const auto d = test::random_vector(n, seed);
  return std::vector<T>(d.begin(), d.end());
}

template <class T>
void check_panel_gemm(double tol) {
  for (int M : {1, 3, 4, 8, 13, 32})
    for (int K : {1, 5, 16})
      for (int n : {1, 7, 16, 17, 100, 129}) {
        const int np = simd::padded<T>(n), ld = np + simd::kLanes<T>;
        const auto a = random_panel<T>(static_cast<size_t>(M) * K, 1);
        const auto x = random_panel<T>(static_cast<size_t>(K) * ld, 2);
        const auto bias = random_panel<T>(M, 3);
        const auto y0 = random_panel<T>(static_cast<size_t>(M) * ld, 4);
        for (bool transposed : {false, true})
          for (bool accumulate : {false, true}) {
            // A(m, k) = a[m·K + k], or a[k·M + m] read through swapped strides.
            const int64_t a_row = transposed ? 1 : K, a_col = transposed ? M : 1;
            std::vector<T> y = y0;
            simd::panel_gemm<T>(M, K, a.data(), a_row, a_col, x.data(), ld, y.data(), ld, np,
                                bias.data(), accumulate);
            for (int m = 0; m < M; ++m)
              for (int j = 0; j < ld; ++j) {
                const T got = y[m * ld + j];
                if (j >= np) {
                  EXPECT_EQ(got, y0[m * ld + j]) << "wrote past np";
                  continue;
                }
                double want = (accumulate ? y0[m * ld + j] : 0.0) + bias[m];
                for (int k = 0; k < K; ++k) want += a[m * a_row + k * a_col] * x[k * ld + j];
                ASSERT_NEAR(got, want, tol) << "M=" << M << " K=" << K << " n=" << n;
              }
          }
      }
}

TEST(SimdRows, PanelGemmMatchesLoops) {
  check_panel_gemm<float>(1e-5);
  check_panel_gemm<double>(1e-13);
}

template <class T>
void check_panel_outer(double tol) {
  using V = simd::Vec<T>;
  for (int M : {1, 3, 4, 9})
    for (int N : {1, 4, 6})
      for (int n : {1, 16, 33}) {
        const int np = simd::padded<T>(n);
        const auto x = random_panel<T>(static_cast<size_t>(M) * np, 5);
        const auto y = random_panel<T>(static_cast<size_t>(N) * np, 6);
        std::vector<V> acc(static_cast<size_t>(M) * N, simd::splat<T>(T(0.5)));
        simd::panel_outer<T>(M, N, x.data(), np, y.data(), np, np, acc.data());
        std::vector<V> sums(M, V{});
        simd::panel_row_sums<T>(M, x.data(), np, np, sums.data());
        for (int m = 0; m < M; ++m) {
          double rs = 0;
          for (int j = 0; j < np; ++j) rs += x[m * np + j];
          EXPECT_NEAR(simd::lane_sum<T>(sums[m]), rs, tol);
          for (int c = 0; c < N; ++c) {
            double want = 0.5 * simd::kLanes<T>;
            for (int j = 0; j < np; ++j) want += x[m * np + j] * y[c * np + j];
            EXPECT_NEAR(simd::lane_sum<T>(acc[m * N + c]), want, tol) << M << " " << N << " " << n;
          }
        }
      }
}

TEST(SimdRows, PanelOuterAndRowSumsMatchLoops) {
  check_panel_outer<float>(1e-4);
  check_panel_outer<double>(1e-12);
}

template <class T>
void check_weighted_rows(double tol) {
  for (int D : {1, 4, 8, 16, 24, 32, 48, 64, 80})
    for (int R : {1, 3, 4, 5, 8})
      for (int n : {1, 3, 4, 9, 70}) {
        const int64_t stride = 3 * D + 1, ldw = n + 3, ld_dst = D + 2;
        const auto rows = random_panel<T>(static_cast<size_t>(n) * stride, 7);
        const auto w = random_panel<T>(static_cast<size_t>(R) * ldw, 8);
        std::vector<T> dst(static_cast<size_t>(R) * ld_dst, T(-7));
        simd::weighted_row_sums<T>(R, n, w.data(), ldw, rows.data(), stride, D, T(0.5), dst.data(),
                                   ld_dst);
        for (int r = 0; r < R; ++r) {
          for (int e = 0; e < D; ++e) {
            double want = 0;
            for (int j = 0; j < n; ++j) want += w[r * ldw + j] * rows[j * stride + e];
            EXPECT_NEAR(dst[r * ld_dst + e], 0.5 * want, tol) << "D=" << D << " R=" << R;
          }
          EXPECT_EQ(dst[r * ld_dst + D], T(-7)) << "wrote past D";
          // A row's result does not depend on how many rows are computed with it.
          std::vector<T> alone(D);
          simd::weighted_row_sums<T>(1, n, w.data() + r * ldw, ldw, rows.data(), stride, D, T(0.5),
                                     alone.data(), D);
          for (int e = 0; e < D; ++e) EXPECT_EQ(alone[e], dst[r * ld_dst + e]);
        }
        const T m = simd::row_max(w.data(), n);
        EXPECT_EQ(m, *std::max_element(w.begin(), w.begin() + n));
      }
}

TEST(SimdRows, WeightedRowSumsAndMaxMatchLoops) {
  check_weighted_rows<float>(1e-5);
  check_weighted_rows<double>(1e-13);
}

TEST(SimdRows, VectorExpIsAccurate) {
  std::vector<float> x;
  for (double v = -90.0; v <= 5.0; v += 0.0137) x.push_back(static_cast<float>(v));
  x.push_back(0.0f);
  x.push_back(-1e-8f);
  std::vector<float> e = x;
  simd::exp_shifted(e.data(), static_cast<int>(e.size()), 0.0f);
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i]));
    if (x[i] < -87.3f) {
      EXPECT_EQ(e[i], 0.0f) << x[i];
    } else {
      EXPECT_LE(std::fabs(e[i] - want), 3e-7 * want) << "exp(" << x[i] << ")";
    }
  }
  // The shift, and a tail shorter than a vector.
  std::vector<float> t = {1.0f, 2.0f, 3.0f};
  simd::exp_shifted(t.data(), 3, 3.0f);
  EXPECT_NEAR(t[0], std::exp(-2.0), 1e-7);
  EXPECT_NEAR(t[2], 1.0, 1e-7);
}

}  // namespace
}  // namespace dape
