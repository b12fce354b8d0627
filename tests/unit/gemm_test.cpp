/*
 * cpu::gemm against a naive triple loop in double, for both types, all four transpose forms,
 * odd sizes, alpha/beta, padded leading dimensions and the BLAS edge cases (beta = 0 ignores
 * what C held; K = 0 scales C by beta). The double loop must also give the same bits for any
 * thread count.
 */
#include "kernels/cpu/gemm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/check.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

struct GemmCase {
  int64_t M, N, K;
};

// C = alpha · op(A) · op(B) + beta · C, in double, element by element.
std::vector<double> naive_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                               const std::vector<double>& A, int64_t lda,
                               const std::vector<double>& B, int64_t ldb, double beta,
                               std::vector<double> C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = alpha * s + (beta == 0 ? 0.0 : beta * C[i * ldc + j]);
    }
  return C;
}

template <class T, class S>
std::vector<T> cast(const std::vector<S>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Runs one case with leading dimensions padded by `pad` and checks every element of C,
// including the padding columns, which must be left alone. The reference multiplies the inputs
// as rounded to T, so the difference is the rounding of the sums: at most ≈ K·u per element
// for entries in [-1, 1]; tol is per unit of K.
template <class T>
void check_case(bool ta, bool tb, const GemmCase& c, double alpha, double beta, int64_t pad,
                double tol) {
  const int64_t a_rows = ta ? c.K : c.M, a_cols = ta ? c.M : c.K;
  const int64_t b_rows = tb ? c.N : c.K, b_cols = tb ? c.K : c.N;
  const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = c.N + pad;
  auto A = test::random_vector(a_rows * lda, 1 + c.M);
  auto B = test::random_vector(b_rows * ldb, 2 + c.N);
  auto C = test::random_vector(c.M * ldc, 3 + c.K);
  const auto a = cast<T>(A), b = cast<T>(B), c_t = cast<T>(C);
  auto out = c_t;
  if (beta == 0) {
    // beta = 0 must not read C: NaN there may not leak into the result.
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) out[i * ldc + j] = std::numeric_limits<T>::quiet_NaN();
  }
  cpu::gemm<T>(ta, tb, c.M, c.N, c.K, static_cast<T>(alpha), a.data(), lda, b.data(), ldb,
               static_cast<T>(beta), out.data(), ldc);
  // Inputs that are exact in T, so the only difference is the rounding of the products' sum.
  auto expected_t = naive_gemm(ta, tb, c.M, c.N, c.K, alpha, cast<double>(a), lda, cast<double>(b),
                               ldb, beta, cast<double>(c_t), ldc);
  double worst = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const bool padding = static_cast<int64_t>(i % ldc) >= c.N;
    if (padding) {
      ASSERT_EQ(static_cast<double>(out[i]), static_cast<double>(c_t[i]))
          << "padding column " << i % ldc << " was written";
      continue;
    }
    ASSERT_FALSE(std::isnan(static_cast<double>(out[i]))) << "element " << i;
    worst = std::max(worst, std::fabs(static_cast<double>(out[i]) - expected_t[i]));
  }
  EXPECT_LE(worst, tol * std::max<int64_t>(1, c.K))
      << "ta=" << ta << " tb=" << tb << " M=" << c.M << " N=" << c.N << " K=" << c.K
      << " alpha=" << alpha << " beta=" << beta << " pad=" << pad;
}

const std::vector<GemmCase> kCases = {{1, 1, 1},    {7, 13, 5},   {65, 33, 17}, {3, 300, 2},
                                      {257, 5, 70}, {33, 513, 9}, {64, 64, 64}};

template <class T>
void check_all_forms(double tol) {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const auto& c : kCases) {
        check_case<T>(ta, tb, c, 1.0, 0.0, 0, tol);
        check_case<T>(ta, tb, c, -0.75, 1.5, 3, tol);
      }
}

TEST(Gemm, FloatMatchesNaiveForAllTransposes) {
  check_all_forms<float>(1e-6);
}

TEST(Gemm, DoubleMatchesNaiveForAllTransposes) {
  check_all_forms<double>(1e-14);
}

template <class T>
void check_empty_inner_dimension() {
  std::vector<T> c = {1, 2, 3, 4, 5, 6};
  const T unused = 0;
  cpu::gemm<T>(false, false, 2, 3, 0, T(1), &unused, 1, &unused, 3, T(2), c.data(), 3);
  EXPECT_EQ(c, (std::vector<T>{2, 4, 6, 8, 10, 12}));
  c.assign(6, std::numeric_limits<T>::quiet_NaN());
  cpu::gemm<T>(false, false, 2, 3, 0, T(1), &unused, 1, &unused, 3, T(0), c.data(), 3);
  EXPECT_EQ(c, (std::vector<T>(6, T(0))));
}

TEST(Gemm, EmptyInnerDimensionScalesByBeta) {
  check_empty_inner_dimension<float>();
  check_empty_inner_dimension<double>();
}

TEST(Gemm, RejectsShortLeadingDimension) {
  std::vector<double> a(12), b(12), c(12);
  EXPECT_THROW(
      cpu::gemm<double>(false, false, 3, 4, 4, 1.0, a.data(), 3, b.data(), 4, 0.0, c.data(), 4),
      InternalError);
}

TEST(Gemm, DoubleIsIndependentOfThreadCount) {
  const int saved = omp_get_max_threads();
  const int64_t M = 70, N = 300, K = 90;
  auto A = test::random_vector(K * M, 5), B = test::random_vector(N * K, 6);
  std::vector<double> c1(M * N), c2(M * N);
  omp_set_num_threads(1);
  cpu::gemm<double>(true, true, M, N, K, 1.0, A.data(), M, B.data(), K, 0.0, c1.data(), N);
  omp_set_num_threads(2);
  cpu::gemm<double>(true, true, M, N, K, 1.0, A.data(), M, B.data(), K, 0.0, c2.data(), N);
  omp_set_num_threads(saved);
  EXPECT_EQ(c1, c2);
}

TEST(Gemm, FloatIsDeterministicRunToRun) {
  const int64_t M = 300, N = 200, K = 500;
  auto A = cast<float>(test::random_vector(M * K, 7)),
       B = cast<float>(test::random_vector(K * N, 8));
  std::vector<float> c1(M * N), c2(M * N);
  cpu::gemm<float>(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, c1.data(), N);
  cpu::gemm<float>(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, c2.data(), N);
  EXPECT_EQ(c1, c2);
}

}  // namespace
}  // namespace dape
