/*
 * The CPU kernels through the Ops interface (CpuOps), checked against independent references:
 *   - every backward against central finite differences of a scalar loss L = Σ w ⊙ op(x) in
 *     double (CpuOps(f64)), with random w;
 *   - forwards against naive formulas (LayerNorm statistics, GELU via erf, cross-entropy via
 *     log-sum-exp, AdamW by a hand-written loop, sum_squares by a double loop);
 *   - float against double on the same (float-representable) inputs;
 *   - accumulation semantics, input validation, and determinism: bitwise equal run to run, and
 *     across 1 and 2 OpenMP threads for every kernel that claims it (all but the float GEMMs,
 *     which oneDNN splits by thread count).
 */
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "tests/unit/test_util.h"

namespace dape {
namespace {

using test::expect_gradients_close;
using test::finite_difference_gradient;
using test::random_vector;

// ---- helpers ---------------------------------------------------------------------------------

// The values as the nearest floats, so that a float and a double backend see the same inputs.
std::vector<double> float_representable(std::vector<double> v) {
  for (auto& x : v) x = static_cast<float>(x);
  return v;
}

std::vector<double> random_floats(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  return float_representable(random_vector(n, seed, lo, hi));
}

DeviceBuffer make(Ops& ops, Shape s, const std::vector<double>& values) {
  auto b = ops.float_buffer(s);
  upload(ops, b, values);
  return b;
}

DeviceBuffer make_ids(Ops& ops, const std::vector<int32_t>& ids) {
  auto b = ops.buffer(DType::i32, {static_cast<int64_t>(ids.size())});
  upload(ops, b, ids);
  return b;
}

std::vector<double> get(Ops& ops, const Tensor& t) {
  return download<double>(ops, t);
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

std::vector<double> minus(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

// Runs fn and returns the message of the InternalError it must throw.
std::string internal_error_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const InternalError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an InternalError";
  return "";
}

// Gradient checks compare against central differences in double: truncation O(h²) ≈ 1e-12,
// cancellation ≈ 1e-16 · |L| / h ≈ 1e-9.
constexpr double kGradRtol = 1e-6;
constexpr double kGradAtol = 1e-8;

// ---- matmul ----------------------------------------------------------------------------------

void check_matmul_gradients(bool with_bias, bool accumulate_dx) {
  CpuOps ops(DType::f64);
  const int64_t M = 6, K = 7, N = 5;
  auto x = random_vector(M * K, 1), w = random_vector(N * K, 2), b = random_vector(N, 3);
  const auto weights = random_vector(M * N, 4);
  auto loss = [&] {
    auto xb = make(ops, {M, K}, x), wb = make(ops, {N, K}, w), bb = make(ops, {N}, b);
    auto out = ops.float_buffer({M, N});
    ops.matmul_forward(out, xb, wb, with_bias ? bb.tensor() : Tensor());
    return dot(get(ops, out), weights);
  };
  const auto dx0 = random_vector(M * K, 5), dw0 = random_vector(N * K, 6),
             db0 = random_vector(N, 7);
  auto xb = make(ops, {M, K}, x), wb = make(ops, {N, K}, w), dout = make(ops, {M, N}, weights);
  auto dx = ops.float_buffer({M, K});
  if (accumulate_dx) {
    upload(ops, dx, dx0);
  } else {
    ops.fill(dx, std::numeric_limits<double>::quiet_NaN());  // overwritten, never read
  }
  auto dw = make(ops, {N, K}, dw0), db = make(ops, {N}, db0);
  ops.matmul_backward(dx, dw, with_bias ? db.tensor() : Tensor(), dout, xb, wb, accumulate_dx);

  auto dx_got = get(ops, dx);
  if (accumulate_dx) dx_got = minus(dx_got, dx0);
  expect_gradients_close(dx_got, finite_difference_gradient(x, loss), kGradRtol, kGradAtol, "dx");
  expect_gradients_close(minus(get(ops, dw), dw0), finite_difference_gradient(w, loss), kGradRtol,
                         kGradAtol, "dw");
  if (with_bias) {
    expect_gradients_close(minus(get(ops, db), db0), finite_difference_gradient(b, loss), kGradRtol,
                           kGradAtol, "db");
  } else {
    EXPECT_EQ(get(ops, db), db0) << "db must be left alone when the bias is undefined";
  }
}

TEST(OpsMatmul, GradientsMatchFiniteDifferencesWithBias) {
  check_matmul_gradients(true, false);
}
TEST(OpsMatmul, GradientsMatchFiniteDifferencesWithoutBias) {
  check_matmul_gradients(false, false);
}
TEST(OpsMatmul, GradientsMatchFiniteDifferencesAccumulatingDx) {
  check_matmul_gradients(true, true);
}

TEST(OpsMatmul, ForwardMatchesNaiveLoop) {
  CpuOps ops(DType::f64);
  const int64_t M = 65, K = 33, N = 17;
  const auto x = random_vector(M * K, 11), w = random_vector(N * K, 12), b = random_vector(N, 13);
  auto out = ops.float_buffer({M, N});
  ops.matmul_forward(out, make(ops, {M, K}, x), make(ops, {N, K}, w), make(ops, {N}, b));
  const auto got = get(ops, out);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = b[j];
      for (int64_t k = 0; k < K; ++k) s += x[i * K + k] * w[j * K + k];
      ASSERT_NEAR(got[i * N + j], s, 1e-13) << "row " << i << " column " << j;
    }
}

TEST(OpsMatmul, BackwardAccumulatesParameterGradientsAndSkipsUndefinedDx) {
  for (DType t : {DType::f32, DType::f64}) {
    CpuOps ops(t);
    const int64_t M = 9, K = 4, N = 3;
    auto x = make(ops, {M, K}, random_floats(M * K, 21)),
         w = make(ops, {N, K}, random_floats(N * K, 22));
    auto dout = make(ops, {M, N}, random_floats(M * N, 23));
    auto dw = ops.float_buffer({N, K}), db = ops.float_buffer({N});
    ops.fill(dw, 0);
    ops.fill(db, 0);
    ops.matmul_backward(Tensor(), dw, db, dout, x, w, false);
    const auto dw1 = get(ops, dw), db1 = get(ops, db);
    ops.matmul_backward(Tensor(), dw, db, dout, x, w, false);
    const auto dw2 = get(ops, dw), db2 = get(ops, db);
    for (size_t i = 0; i < dw1.size(); ++i) EXPECT_EQ(dw2[i], 2 * dw1[i]) << dtype_name(t);
    for (size_t i = 0; i < db1.size(); ++i) EXPECT_EQ(db2[i], 2 * db1[i]) << dtype_name(t);
  }
}

// ---- layernorm -------------------------------------------------------------------------------

TEST(OpsLayerNorm, GradientsMatchFiniteDifferences) {
  CpuOps ops(DType::f64);
  const int64_t R = 4, C = 9;
  auto x = random_vector(R * C, 31, -1.5, 2.5);  // rows with a non-zero mean
  auto w = random_vector(C, 32, 0.5, 1.5), b = random_vector(C, 33);
  const auto weights = random_vector(R * C, 34);
  auto loss = [&] {
    auto out = ops.float_buffer({R, C}), mean = ops.float_buffer({R}), rstd = ops.float_buffer({R});
    ops.layernorm_forward(out, mean, rstd, make(ops, {R, C}, x), make(ops, {C}, w),
                          make(ops, {C}, b));
    return dot(get(ops, out), weights);
  };
  auto xb = make(ops, {R, C}, x), wb = make(ops, {C}, w), bb = make(ops, {C}, b);
  auto out = ops.float_buffer({R, C}), mean = ops.float_buffer({R}), rstd = ops.float_buffer({R});
  ops.layernorm_forward(out, mean, rstd, xb, wb, bb);
  // Backward accumulates into all three gradients.
  const auto dx0 = random_vector(R * C, 35), dw0 = random_vector(C, 36), db0 = random_vector(C, 37);
  auto dx = make(ops, {R, C}, dx0), dw = make(ops, {C}, dw0), db = make(ops, {C}, db0);
  ops.layernorm_backward(dx, dw, db, make(ops, {R, C}, weights), xb, wb, mean, rstd);
  expect_gradients_close(minus(get(ops, dx), dx0), finite_difference_gradient(x, loss), kGradRtol,
                         kGradAtol, "dx");
  expect_gradients_close(minus(get(ops, dw), dw0), finite_difference_gradient(w, loss), kGradRtol,
                         kGradAtol, "dw");
  expect_gradients_close(minus(get(ops, db), db0), finite_difference_gradient(b, loss), kGradRtol,
                         kGradAtol, "db");
}

TEST(OpsLayerNorm, ForwardMatchesNaiveStatistics) {
  for (DType t : {DType::f32, DType::f64}) {
    CpuOps ops(t);
    const int64_t R = 7, C = 300;
    // Large mean, small spread: a one-pass variance in float would lose most digits here.
    const auto x = random_floats(R * C, 41, 99.0, 101.0);
    const auto w = random_floats(C, 42), b = random_floats(C, 43);
    auto out = ops.float_buffer({R, C}), mean = ops.float_buffer({R}), rstd = ops.float_buffer({R});
    ops.layernorm_forward(out, mean, rstd, make(ops, {R, C}, x), make(ops, {C}, w),
                          make(ops, {C}, b));
    const auto got = get(ops, out), got_mean = get(ops, mean), got_rstd = get(ops, rstd);
    const double tol = t == DType::f32 ? 1e-6 : 1e-13;
    for (int64_t r = 0; r < R; ++r) {
      double mu = 0, var = 0;
      for (int64_t i = 0; i < C; ++i) mu += x[r * C + i];
      mu /= C;
      for (int64_t i = 0; i < C; ++i) var += (x[r * C + i] - mu) * (x[r * C + i] - mu);
      var /= C;  // biased, as PyTorch
      const double rs = 1.0 / std::sqrt(var + 1e-5);
      EXPECT_NEAR(got_mean[r], mu, tol * std::fabs(mu)) << dtype_name(t) << " row " << r;
      EXPECT_NEAR(got_rstd[r], rs, tol * rs) << dtype_name(t) << " row " << r;
      for (int64_t i = 0; i < C; ++i) {
        const double y = (x[r * C + i] - mu) * rs * w[i] + b[i];
        ASSERT_NEAR(got[r * C + i], y, 4 * tol * std::max(1.0, std::fabs(y)))
            << dtype_name(t) << " row " << r << " column " << i;
      }
    }
  }
}

// ---- GELU ------------------------------------------------------------------------------------

TEST(OpsGelu, GradientMatchesFiniteDifferences) {
  CpuOps ops(DType::f64);
  const int64_t n = 64;
  auto x = random_vector(n, 51, -5.0, 5.0);
  const auto weights = random_vector(n, 52);
  auto loss = [&] {
    auto out = ops.float_buffer({n});
    ops.gelu_forward(out, make(ops, {n}, x));
    return dot(get(ops, out), weights);
  };
  auto dx = ops.float_buffer({n});
  ops.gelu_backward(dx, make(ops, {n}, x), make(ops, {n}, weights));
  expect_gradients_close(get(ops, dx), finite_difference_gradient(x, loss), kGradRtol, kGradAtol,
                         "dx");
}

TEST(OpsGelu, ForwardMatchesErfFormula) {
  CpuOps ops(DType::f64);
  const int64_t n = 2001;
  std::vector<double> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = -10.0 + 0.01 * i;
  auto out = ops.float_buffer({n});
  ops.gelu_forward(out, make(ops, {n}, x));
  const auto got = get(ops, out);
  for (int64_t i = 0; i < n; ++i) {
    const double y = 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0)));
    ASSERT_NEAR(got[i], y, 1e-15 * std::max(1.0, std::fabs(x[i]))) << "x = " << x[i];
  }
}

TEST(OpsGelu, BackwardMayAliasDout) {
  for (DType t : {DType::f32, DType::f64}) {
    CpuOps ops(t);
    const int64_t n = 40000;  // large enough for the parallel path
    auto x = make(ops, {n}, random_floats(n, 53, -4.0, 4.0));
    const auto g = random_floats(n, 54);
    auto dout = make(ops, {n}, g), dx = ops.float_buffer({n});
    ops.gelu_backward(dx, x, dout);
    ops.gelu_backward(dout, x, dout);
    EXPECT_EQ(get(ops, dout), get(ops, dx)) << dtype_name(t);
  }
}

// ---- embedding -------------------------------------------------------------------------------

void check_embedding_gradients(bool with_positions) {
  CpuOps ops(DType::f64);
  const int64_t V = 6, C = 5, P = 10, rows = 8;
  const int seq_len = 4, pos_offset = 3;
  const std::vector<int32_t> tokens = {1, 3, 1, 5, 0, 3, 3, 2};  // repeats within and across rows
  auto wte = random_vector(V * C, 61), wpe = random_vector(P * C, 62);
  const auto weights = random_vector(rows * C, 63);
  auto ids = make_ids(ops, tokens);
  auto loss = [&] {
    auto out = ops.float_buffer({rows, C});
    auto pe = make(ops, {P, C}, wpe);
    ops.embedding_forward(out, ids, make(ops, {V, C}, wte), with_positions ? pe.tensor() : Tensor(),
                          seq_len, pos_offset);
    return dot(get(ops, out), weights);
  };
  const auto dwte0 = random_vector(V * C, 64), dwpe0 = random_vector(P * C, 65);
  auto dwte = make(ops, {V, C}, dwte0), dwpe = make(ops, {P, C}, dwpe0);
  ops.embedding_backward(dwte, with_positions ? dwpe.tensor() : Tensor(),
                         make(ops, {rows, C}, weights), ids, seq_len, pos_offset);
  expect_gradients_close(minus(get(ops, dwte), dwte0), finite_difference_gradient(wte, loss),
                         kGradRtol, kGradAtol, "dwte");
  if (with_positions) {
    expect_gradients_close(minus(get(ops, dwpe), dwpe0), finite_difference_gradient(wpe, loss),
                           kGradRtol, kGradAtol, "dwpe");
  } else {
    EXPECT_EQ(get(ops, dwpe), dwpe0);
  }
}

TEST(OpsEmbedding, GradientsMatchFiniteDifferencesWithPositions) {
  check_embedding_gradients(true);
}
TEST(OpsEmbedding, GradientsMatchFiniteDifferencesWithoutPositions) {
  check_embedding_gradients(false);
}

TEST(OpsEmbedding, ForwardGathersRows) {
  CpuOps ops(DType::f64);
  const int64_t V = 4, C = 3, P = 5;
  const auto wte = random_vector(V * C, 66), wpe = random_vector(P * C, 67);
  const std::vector<int32_t> tokens = {3, 0, 0, 2, 1, 3};  // batch 2 × seq_len 3
  auto out = ops.float_buffer({6, C});
  ops.embedding_forward(out, make_ids(ops, tokens), make(ops, {V, C}, wte), make(ops, {P, C}, wpe),
                        3, 2);
  const auto got = get(ops, out);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < C; ++c)
      EXPECT_EQ(got[r * C + c], wte[tokens[r] * C + c] + wpe[(2 + r % 3) * C + c]);
}

TEST(OpsEmbedding, RejectsOutOfRangeTokensAndPositions) {
  CpuOps ops(DType::f32);
  const int64_t V = 4, C = 3, P = 5;
  auto wte = ops.float_buffer({V, C}), wpe = ops.float_buffer({P, C});
  auto out = ops.float_buffer({4, C});
  ops.fill(wte, 0);
  ops.fill(wpe, 0);
  auto bad = make_ids(ops, {0, 1, 2, 4});
  auto msg = internal_error_message([&] { ops.embedding_forward(out, bad, wte, Tensor(), 4, 0); });
  EXPECT_NE(msg.find("token id 4 at row 3"), std::string::npos) << msg;
  auto negative = make_ids(ops, {0, -1, 2, 3});
  msg = internal_error_message([&] { ops.embedding_backward(wte, Tensor(), out, negative, 4, 0); });
  EXPECT_NE(msg.find("token id -1 at row 1"), std::string::npos) << msg;
  // Positions 2..5 with seq_len 4 and offset 2: position 5 is past wpe's 5 rows.
  auto good = make_ids(ops, {0, 1, 2, 3});
  msg = internal_error_message([&] { ops.embedding_forward(out, good, wte, wpe, 4, 2); });
  EXPECT_NE(msg.find("position 5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("row 3"), std::string::npos) << msg;
  EXPECT_NO_THROW(ops.embedding_forward(out, good, wte, wpe, 4, 1));
  EXPECT_NO_THROW(ops.embedding_forward(out, good, wte, wpe, 2, 3));  // positions 3, 4, 3, 4
}

// ---- shape checks at the Ops boundary ----------------------------------------------------------

TEST(OpsShapes, MismatchedShapesAreRejected) {
  CpuOps ops(DType::f32);
  auto x = ops.float_buffer({4, 6}), out = ops.float_buffer({4, 6}), w6 = ops.float_buffer({6});
  auto w5 = ops.float_buffer({5}), stats = ops.float_buffer({4}), stats3 = ops.float_buffer({3});
  ops.fill(x, 1);
  ops.fill(w6, 1);
  ops.fill(w5, 1);
  EXPECT_THROW(ops.layernorm_forward(out, stats, stats, x, w6, w5), InternalError);          // b
  EXPECT_THROW(ops.layernorm_backward(x, w6, w5, out, x, w6, stats, stats), InternalError);  // db
  EXPECT_THROW(ops.layernorm_backward(x, w6, w6, out, x, w6, stats3, stats), InternalError);

  auto wte = ops.float_buffer({3, 6}), wpe_narrow = ops.float_buffer({8, 5});
  ops.fill(wte, 0);
  ops.fill(wpe_narrow, 0);
  auto ids = make_ids(ops, {0, 1, 2, 0});
  EXPECT_THROW(ops.embedding_forward(out, ids, wte, wpe_narrow, 4, 0), InternalError);
  EXPECT_THROW(ops.embedding_backward(wte, wpe_narrow, out, ids, 4, 0), InternalError);

  auto w = ops.float_buffer({3, 6}), dw = ops.float_buffer({3, 6}), dout = ops.float_buffer({4, 3});
  auto db_wrong = ops.float_buffer({4});
  EXPECT_THROW(ops.matmul_backward(Tensor(), dw, db_wrong, dout, x, w, false), InternalError);
}

// ---- cross-entropy ---------------------------------------------------------------------------

TEST(OpsCrossEntropy, GradientMatchesFiniteDifferencesWithPadding) {
  CpuOps ops(DType::f64);
  const int64_t R = 5, V = 7, Vp = 9;
  const double grad_scale = 0.37;
  auto logits = random_vector(R * Vp, 71, -3.0, 3.0);
  const std::vector<int32_t> targets = {0, 6, 3, 3, 1};
  auto ids = make_ids(ops, targets);
  auto loss = [&] {
    auto lb = make(ops, {R, Vp}, logits), losses = ops.float_buffer({R});
    ops.cross_entropy(losses, lb, ids, V, 0.0);
    const auto l = get(ops, losses);
    double total = 0;
    for (double v : l) total += v;
    return grad_scale * total;
  };
  auto lb = make(ops, {R, Vp}, logits), losses = ops.float_buffer({R});
  ops.cross_entropy(losses, lb, ids, V, grad_scale);
  const auto grad = get(ops, lb);
  expect_gradients_close(grad, finite_difference_gradient(logits, loss), kGradRtol, kGradAtol,
                         "dlogits");
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = V; j < Vp; ++j)
      EXPECT_EQ(grad[r * Vp + j], 0.0) << "padding " << r << ", " << j;
}

TEST(OpsCrossEntropy, LossesMatchLogSumExpAndLeaveLogitsWithoutGradient) {
  for (DType t : {DType::f32, DType::f64}) {
    CpuOps ops(t);
    const int64_t R = 6, V = 1000, Vp = 1024;
    auto logits = random_floats(R * Vp, 72, -20.0, 20.0);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = V; j < Vp; ++j) logits[r * Vp + j] = 1000.0;  // padding must be ignored
    const std::vector<int32_t> targets = {0, 999, 500, 1, 2, 998};
    auto lb = make(ops, {R, Vp}, logits), losses = ops.float_buffer({R});
    ops.cross_entropy(losses, lb, make_ids(ops, targets), V, 0.0);
    EXPECT_EQ(get(ops, lb), logits) << "grad_scale 0 must leave the logits alone";
    const auto got = get(ops, losses);
    for (int64_t r = 0; r < R; ++r) {
      double m = -1e300, s = 0;
      for (int64_t j = 0; j < V; ++j) m = std::max(m, logits[r * Vp + j]);
      for (int64_t j = 0; j < V; ++j) s += std::exp(logits[r * Vp + j] - m);
      const double expected = m + std::log(s) - logits[r * Vp + targets[r]];
      EXPECT_NEAR(got[r], expected, (t == DType::f32 ? 1e-6 : 1e-13) * std::max(1.0, expected))
          << dtype_name(t) << " row " << r;
    }
  }
}

TEST(OpsCrossEntropy, NanLogitGivesNanLoss) {
  CpuOps ops(DType::f32);
  auto lb = make(ops, {2, 4},
                 {0.5, std::numeric_limits<double>::quiet_NaN(), 1.0, 2.0,  //
                  0.1, 0.2, 0.3, 0.4});
  auto losses = ops.float_buffer({2});
  ops.cross_entropy(losses, lb, make_ids(ops, {0, 3}), 4, 0.0);
  const auto l = get(ops, losses);
  EXPECT_TRUE(std::isnan(l[0]));
  EXPECT_FALSE(std::isnan(l[1]));
}

TEST(OpsCrossEntropy, RejectsOutOfRangeTarget) {
  CpuOps ops(DType::f32);
  auto lb = ops.float_buffer({3, 8}), losses = ops.float_buffer({3});
  ops.fill(lb, 0);
  auto bad = make_ids(ops, {0, 2, 6});  // 6 is a padding column of a vocabulary of 6
  auto msg = internal_error_message([&] { ops.cross_entropy(losses, lb, bad, 6, 1.0); });
  EXPECT_NE(msg.find("target 6 at row 2"), std::string::npos) << msg;
}

// ---- AdamW -----------------------------------------------------------------------------------

// Three AdamW steps written out plainly, in double, storing m, v and p through `store` (the
// identity for a double backend; rounding to float for a float backend).
template <class Store>
void reference_adamw(std::vector<double>& p, std::vector<double>& m, std::vector<double>& v,
                     const std::vector<std::vector<double>>& grads, AdamWHyper h, Store store) {
  for (size_t s = 0; s < grads.size(); ++s) {
    h.step = static_cast<int64_t>(s) + 1;
    const double bc1 = 1 - std::pow(h.beta1, h.step), bc2 = 1 - std::pow(h.beta2, h.step);
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = grads[s][i];
      m[i] = store(h.beta1 * m[i] + (1 - h.beta1) * g);
      v[i] = store(h.beta2 * v[i] + (1 - h.beta2) * g * g);
      const double decayed = p[i] * (1 - h.lr * h.weight_decay);
      p[i] = store(decayed - (h.lr / bc1) * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + h.eps));
    }
  }
}

TEST(OpsAdamW, ThreeStepsMatchHandWrittenReference) {
  for (DType t : {DType::f32, DType::f64}) {
    CpuOps ops(t);
    const int64_t n = 1000;
    AdamWHyper h;
    h.lr = 1e-2;
    h.weight_decay = 0.1;
    auto p_ref = random_floats(n, 81), m_ref = std::vector<double>(n, 0.0), v_ref = m_ref;
    std::vector<std::vector<double>> grads;
    for (int s = 0; s < 3; ++s) grads.push_back(random_floats(n, 82 + s, -2.0, 2.0));
    auto p = make(ops, {n}, p_ref), m = ops.float_buffer({n}), v = ops.float_buffer({n});
    ops.fill(m, 0);
    ops.fill(v, 0);
    for (int s = 0; s < 3; ++s) {
      h.step = s + 1;
      ops.adamw(p, make(ops, {n}, grads[s]), m, v, h);
    }
    if (t == DType::f32) {
      reference_adamw(p_ref, m_ref, v_ref, grads, h,
                      [](double x) { return static_cast<double>(static_cast<float>(x)); });
    } else {
      reference_adamw(p_ref, m_ref, v_ref, grads, h, [](double x) { return x; });
    }
    // Float: the kernel and the reference round the same double values to float, so they agree
    // to the last bit but for double-rounding ties (allow one ulp). Double: a few ulp.
    // Double: a few ulp of the O(1) terms (the compiler may fuse multiply-adds differently).
    auto tol = [&](double ref) {
      return t == DType::f32 ? 0x1p-23 * std::fabs(ref) : 1e-14 * std::max(1.0, std::fabs(ref));
    };
    const auto got_p = get(ops, p), got_m = get(ops, m), got_v = get(ops, v);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(got_p[i], p_ref[i], tol(p_ref[i])) << dtype_name(t) << " p " << i;
      ASSERT_NEAR(got_m[i], m_ref[i], tol(m_ref[i])) << dtype_name(t) << " m " << i;
      ASSERT_NEAR(got_v[i], v_ref[i], tol(v_ref[i])) << dtype_name(t) << " v " << i;
    }
  }
}

// ---- elementwise and reductions --------------------------------------------------------------

TEST(OpsElementwise, FillScaleAddClamp) {
  for (DType t : {DType::f32, DType::f64}) {
    CpuOps ops(t);
    const int64_t n = 50000;
    const auto a = random_floats(n, 91), b = random_floats(n, 92);
    auto x = make(ops, {n}, a), y = make(ops, {n}, b), out = ops.float_buffer({n});
    ops.add(out, x, y);
    auto sum = get(ops, out);
    for (int64_t i = 0; i < n; ++i) {
      const double expected =
          t == DType::f32 ? static_cast<double>(static_cast<float>(a[i]) + static_cast<float>(b[i]))
                          : a[i] + b[i];
      ASSERT_EQ(sum[i], expected) << dtype_name(t) << " element " << i;
    }
    ops.add(x, x, y);  // out aliases a
    EXPECT_EQ(get(ops, x), sum);
    ops.scale(y, -2.0);
    auto scaled = get(ops, y);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(scaled[i], -2.0 * b[i]);
    ops.clamp_min(y, 0.25);
    auto clamped = get(ops, y);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(clamped[i], std::max(0.25, -2.0 * b[i]));
    ops.fill(y, 3.5);
    EXPECT_EQ(get(ops, y), std::vector<double>(n, 3.5));
    auto nan = make(ops, {1}, {std::numeric_limits<double>::quiet_NaN()});
    ops.clamp_min(nan, 0.0);
    EXPECT_TRUE(std::isnan(get(ops, nan)[0])) << "clamp_min must not hide a NaN";
  }
}

TEST(OpsElementwise, SumSquaresMatchesDoubleLoop) {
  for (DType t : {DType::f32, DType::f64}) {
    CpuOps ops(t);
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1000}, int64_t{100003}}) {
      const auto v = random_floats(n, 93, -3.0, 3.0);
      double expected = 0;
      for (double x : v) expected += x * x;
      auto x = make(ops, {n}, v);
      EXPECT_NEAR(ops.sum_squares(x), expected, 1e-13 * expected) << dtype_name(t) << " n " << n;
    }
  }
}

// ---- float vs double, determinism ------------------------------------------------------------

struct Output {
  std::string name;
  std::vector<double> values;
  double tol;                      // float vs double: max |f − d| ≤ tol · max(|d|)
  bool thread_independent = true;  // bitwise equal for 1 and 2 threads
};
using Scenario = std::function<std::vector<Output>(CpuOps&)>;

// Sizes are large enough to take every kernel's parallel path.
std::vector<Output> matmul_scenario(CpuOps& ops) {
  const int64_t M = 300, K = 65, N = 130;
  auto x = make(ops, {M, K}, random_floats(M * K, 101)),
       w = make(ops, {N, K}, random_floats(N * K, 102));
  auto b = make(ops, {N}, random_floats(N, 103));
  auto out = ops.float_buffer({M, N});
  ops.matmul_forward(out, x, w, b);
  auto dout = make(ops, {M, N}, random_floats(M * N, 104));
  auto dx = ops.float_buffer({M, K}), dw = make(ops, {N, K}, random_floats(N * K, 105));
  auto db = make(ops, {N}, random_floats(N, 106));
  ops.matmul_backward(dx, dw, db, dout, x, w, false);
  return {{"matmul out", get(ops, out), 1e-6, false},
          {"matmul dx", get(ops, dx), 1e-6, false},
          {"matmul dw", get(ops, dw), 1e-6, false},
          {"matmul db", get(ops, db), 1e-6, true}};
}

std::vector<Output> layernorm_scenario(CpuOps& ops) {
  const int64_t R = 300, C = 200;
  auto x = make(ops, {R, C}, random_floats(R * C, 111, -2.0, 3.0));
  auto w = make(ops, {C}, random_floats(C, 112)), b = make(ops, {C}, random_floats(C, 113));
  auto out = ops.float_buffer({R, C}), mean = ops.float_buffer({R}), rstd = ops.float_buffer({R});
  ops.layernorm_forward(out, mean, rstd, x, w, b);
  auto dx = make(ops, {R, C}, random_floats(R * C, 114));
  auto dw = make(ops, {C}, random_floats(C, 115)), db = make(ops, {C}, random_floats(C, 116));
  ops.layernorm_backward(dx, dw, db, make(ops, {R, C}, random_floats(R * C, 117)), x, w, mean,
                         rstd);
  return {{"layernorm out", get(ops, out), 1e-6},   {"layernorm mean", get(ops, mean), 1e-7},
          {"layernorm rstd", get(ops, rstd), 1e-7}, {"layernorm dx", get(ops, dx), 1e-6},
          {"layernorm dw", get(ops, dw), 1e-6},     {"layernorm db", get(ops, db), 1e-6}};
}

std::vector<Output> gelu_scenario(CpuOps& ops) {
  const int64_t n = 50000;
  auto x = make(ops, {n}, random_floats(n, 121, -6.0, 6.0));
  auto out = ops.float_buffer({n}), dx = ops.float_buffer({n});
  ops.gelu_forward(out, x);
  ops.gelu_backward(dx, x, make(ops, {n}, random_floats(n, 122)));
  return {{"gelu out", get(ops, out), 3e-7}, {"gelu dx", get(ops, dx), 1e-6}};
}

std::vector<Output> embedding_scenario(CpuOps& ops) {
  const int64_t V = 50, C = 160, P = 100, rows = 256;
  const int seq_len = 64, pos_offset = 7;
  std::vector<int32_t> tokens(rows);
  for (int64_t r = 0; r < rows; ++r) tokens[r] = static_cast<int32_t>((r * 7 + r / 5) % V);
  auto ids = make_ids(ops, tokens);
  auto wte = make(ops, {V, C}, random_floats(V * C, 131)),
       wpe = make(ops, {P, C}, random_floats(P * C, 132));
  auto out = ops.float_buffer({rows, C});
  ops.embedding_forward(out, ids, wte, wpe, seq_len, pos_offset);
  auto dwte = make(ops, {V, C}, random_floats(V * C, 133)),
       dwpe = make(ops, {P, C}, random_floats(P * C, 134));
  ops.embedding_backward(dwte, dwpe, make(ops, {rows, C}, random_floats(rows * C, 135)), ids,
                         seq_len, pos_offset);
  return {{"embedding out", get(ops, out), 1e-7},
          {"embedding dwte", get(ops, dwte), 1e-6},
          {"embedding dwpe", get(ops, dwpe), 1e-6}};
}

std::vector<Output> cross_entropy_scenario(CpuOps& ops) {
  const int64_t R = 64, V = 1000, Vp = 1024;
  auto logits = make(ops, {R, Vp}, random_floats(R * Vp, 141, -8.0, 8.0));
  std::vector<int32_t> targets(R);
  for (int64_t r = 0; r < R; ++r) targets[r] = static_cast<int32_t>((r * 37) % V);
  auto losses = ops.float_buffer({R});
  ops.cross_entropy(losses, logits, make_ids(ops, targets), static_cast<int>(V), 1.0 / R);
  return {{"cross_entropy losses", get(ops, losses), 1e-6},
          {"cross_entropy dlogits", get(ops, logits), 1e-6}};
}

std::vector<Output> adamw_scenario(CpuOps& ops) {
  const int64_t n = 50000;
  auto p = make(ops, {n}, random_floats(n, 151)), m = ops.float_buffer({n}),
       v = ops.float_buffer({n});
  ops.fill(m, 0);
  ops.fill(v, 0);
  AdamWHyper h;
  h.lr = 1e-3;
  h.weight_decay = 0.1;
  for (int s = 1; s <= 3; ++s) {
    h.step = s;
    ops.adamw(p, make(ops, {n}, random_floats(n, 151 + s)), m, v, h);
  }
  // Three roundings to float of each stored value: up to ≈ 3 · 2⁻²⁴ relative.
  return {{"adamw p", get(ops, p), 3e-7},
          {"adamw m", get(ops, m), 3e-7},
          {"adamw v", get(ops, v), 3e-7}};
}

std::vector<Output> sum_squares_scenario(CpuOps& ops) {
  auto x = make(ops, {100003}, random_floats(100003, 161));
  // Both sum the same values in double, in blocks of the same order; the SIMD lanes differ.
  return {{"sum_squares", {ops.sum_squares(x)}, 1e-13}};
}

const std::vector<std::pair<const char*, Scenario>> kScenarios = {
    {"matmul", matmul_scenario},
    {"layernorm", layernorm_scenario},
    {"gelu", gelu_scenario},
    {"embedding", embedding_scenario},
    {"cross_entropy", cross_entropy_scenario},
    {"adamw", adamw_scenario},
    {"sum_squares", sum_squares_scenario}};

TEST(OpsAgreement, FloatMatchesDouble) {
  for (const auto& [name, scenario] : kScenarios) {
    CpuOps f32(DType::f32), f64(DType::f64);
    const auto a = scenario(f32), b = scenario(f64);
    ASSERT_EQ(a.size(), b.size());
    for (size_t o = 0; o < a.size(); ++o) {
      const double err = test::max_abs_diff(a[o].values, b[o].values);
      EXPECT_LE(err, a[o].tol * std::max(test::max_abs(b[o].values), 1e-30))
          << a[o].name << ": max |float − double| = " << err
          << ", max |double| = " << test::max_abs(b[o].values);
    }
  }
}

TEST(OpsDeterminism, FloatIsBitwiseEqualRunToRun) {
  for (const auto& [name, scenario] : kScenarios) {
    CpuOps ops(DType::f32);
    const auto a = scenario(ops), b = scenario(ops);
    for (size_t o = 0; o < a.size(); ++o) EXPECT_EQ(a[o].values, b[o].values) << a[o].name;
  }
}

TEST(OpsDeterminism, FloatIsIndependentOfThreadCount) {
  const int saved = omp_get_max_threads();
  for (const auto& [name, scenario] : kScenarios) {
    CpuOps one(DType::f32, 1);
    const auto a = scenario(one);
    CpuOps two(DType::f32, 2);
    const auto b = scenario(two);
    for (size_t o = 0; o < a.size(); ++o) {
      if (a[o].thread_independent) {
        EXPECT_EQ(a[o].values, b[o].values) << a[o].name;
      }
    }
  }
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace dape
