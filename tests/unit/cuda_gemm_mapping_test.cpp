/*
 * The row-major → column-major GEMM mapping of kernels/gemm_layout.h, which the cuBLASLt GEMMs of
 * the CUDA backend are built on, checked without a GPU: each mapped GEMM is run by a naive
 * column-major GEMM with BLAS semantics (element (r, c) of a stored matrix at r + c · ld) on the
 * row-major operands' memory, and compared with the row-major product written out from its
 * definition. Every stored matrix is also checked to fit its leading dimension, and every access
 * is bounds-checked.
 */
#include "kernels/gemm_layout.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/unit/test_util.h"

namespace dape {
namespace {

// C = op(A) · op(B) + beta · C, column-major, as cuBLAS defines it; at() traps any access
// outside the buffers.
void column_major_reference(const ColumnMajorGemm& g, const std::vector<double>& a,
                            const std::vector<double>& b, double beta, std::vector<double>& c) {
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      double s = 0;
      for (int64_t l = 0; l < g.k; ++l) {
        const double av = g.trans_a ? a.at(l + i * g.lda) : a.at(i + l * g.lda);
        const double bv = g.trans_b ? b.at(j + l * g.ldb) : b.at(l + j * g.ldb);
        s += av * bv;
      }
      double& cv = c.at(i + j * g.ldc);
      cv = s + (beta == 0 ? 0.0 : beta * cv);
    }
  }
}

// The stored matrices are consistent with the product's dimensions and their leading dimensions.
void expect_consistent(const ColumnMajorGemm& g) {
  EXPECT_EQ(g.trans_a ? g.a_cols : g.a_rows, g.m);
  EXPECT_EQ(g.trans_a ? g.a_rows : g.a_cols, g.k);
  EXPECT_EQ(g.trans_b ? g.b_cols : g.b_rows, g.k);
  EXPECT_EQ(g.trans_b ? g.b_rows : g.b_cols, g.n);
  EXPECT_GE(g.lda, g.a_rows);
  EXPECT_GE(g.ldb, g.b_rows);
  EXPECT_GE(g.ldc, g.m);
}

struct Dims {
  int64_t M, N, K;
};

const Dims kDims[] = {{1, 1, 1}, {5, 3, 7}, {3, 8, 2}, {16, 9, 1}, {4, 1, 11}};

// Z[M, N] = op(X) · op(Y) in row-major memory with padded rows, all four transpose forms.
TEST(CudaGemmMapping, GenericRowMajorProductMatchesDefinition) {
  for (const Dims& d : kDims) {
    for (bool tx : {false, true}) {
      for (bool ty : {false, true}) {
        for (int64_t pad : {0, 3}) {
          SCOPED_TRACE(testing::Message()
                       << "M=" << d.M << " N=" << d.N << " K=" << d.K << " trans_x=" << tx
                       << " trans_y=" << ty << " pad=" << pad);
          const int64_t x_rows = tx ? d.K : d.M, x_cols = tx ? d.M : d.K;
          const int64_t y_rows = ty ? d.N : d.K, y_cols = ty ? d.K : d.N;
          const int64_t ldx = x_cols + pad, ldy = y_cols + pad, ldz = d.N + pad;
          const auto X = test::random_vector(x_rows * ldx, 11 + d.M);
          const auto Y = test::random_vector(y_rows * ldy, 12 + d.N);
          const auto Z0 = test::random_vector(d.M * ldz, 13 + d.K);

          const ColumnMajorGemm g = column_major_gemm(tx, ty, d.M, d.N, d.K, ldx, ldy, ldz);
          expect_consistent(g);
          for (double beta : {0.0, 1.0}) {
            std::vector<double> got = Z0;
            column_major_reference(g, /*a=*/Y, /*b=*/X, beta, got);
            std::vector<double> want = Z0;
            for (int64_t i = 0; i < d.M; ++i) {
              for (int64_t j = 0; j < d.N; ++j) {
                double s = 0;
                for (int64_t l = 0; l < d.K; ++l) {
                  const double xv = tx ? X[l * ldx + i] : X[i * ldx + l];
                  const double yv = ty ? Y[j * ldy + l] : Y[l * ldy + j];
                  s += xv * yv;
                }
                want[i * ldz + j] = s + beta * Z0[i * ldz + j];
              }
            }
            // Padding columns of Z are left alone by both.
            EXPECT_LE(test::max_abs_diff(got, want), 1e-12) << "beta=" << beta;
          }
        }
      }
    }
  }
}

// The three GEMMs of a linear layer, each against its own row-major formula.
TEST(CudaGemmMapping, LinearLayerGemmsMatchTheirFormulas) {
  for (const Dims& d : kDims) {
    SCOPED_TRACE(testing::Message() << "M=" << d.M << " N=" << d.N << " K=" << d.K);
    const int64_t M = d.M, N = d.N, K = d.K;
    const auto x = test::random_vector(M * K, 21 + M);
    const auto w = test::random_vector(N * K, 22 + N);
    const auto dout = test::random_vector(M * N, 23 + K);

    {  // out [M, N] = x · wᵀ
      const ColumnMajorGemm g = linear_forward_gemm(M, N, K);
      expect_consistent(g);
      EXPECT_TRUE(g.trans_a);
      EXPECT_FALSE(g.trans_b);
      EXPECT_EQ(g.m, N);  // the bias epilogue adds a vector along the m rows: b [N]
      std::vector<double> got(M * N, 7.0), want(M * N);
      column_major_reference(g, /*a=*/w, /*b=*/x, 0.0, got);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = 0;
          for (int64_t l = 0; l < K; ++l) s += x[i * K + l] * w[j * K + l];
          want[i * N + j] = s;
        }
      EXPECT_LE(test::max_abs_diff(got, want), 1e-12) << "forward";
    }
    {  // dx [M, K] = dout · w, overwritten and accumulated
      const ColumnMajorGemm g = linear_backward_dx_gemm(M, N, K);
      expect_consistent(g);
      EXPECT_FALSE(g.trans_a);
      EXPECT_FALSE(g.trans_b);
      const auto dx0 = test::random_vector(M * K, 24);
      for (double beta : {0.0, 1.0}) {
        std::vector<double> got = dx0, want(M * K);
        column_major_reference(g, /*a=*/w, /*b=*/dout, beta, got);
        for (int64_t i = 0; i < M; ++i)
          for (int64_t l = 0; l < K; ++l) {
            double s = 0;
            for (int64_t j = 0; j < N; ++j) s += dout[i * N + j] * w[j * K + l];
            want[i * K + l] = s + beta * dx0[i * K + l];
          }
        EXPECT_LE(test::max_abs_diff(got, want), 1e-12) << "dx, beta=" << beta;
      }
    }
    {  // dw [N, K] += doutᵀ · x
      const ColumnMajorGemm g = linear_backward_dw_gemm(M, N, K);
      expect_consistent(g);
      EXPECT_FALSE(g.trans_a);
      EXPECT_TRUE(g.trans_b);
      const auto dw0 = test::random_vector(N * K, 25);
      std::vector<double> got = dw0, want(N * K);
      column_major_reference(g, /*a=*/x, /*b=*/dout, 1.0, got);
      for (int64_t j = 0; j < N; ++j)
        for (int64_t l = 0; l < K; ++l) {
          double s = 0;
          for (int64_t i = 0; i < M; ++i) s += dout[i * N + j] * x[i * K + l];
          want[j * K + l] = dw0[j * K + l] + s;
        }
      EXPECT_LE(test::max_abs_diff(got, want), 1e-12) << "dw";
    }
  }
}

}  // namespace
}  // namespace dape
