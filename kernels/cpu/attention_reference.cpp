#include "kernels/cpu/attention_reference.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/check.h"
#include "kernels/attention_math.h"

namespace dape::cpu {
namespace {

namespace am = dape::attention_math;

// Query rows per gradient partial. Fixed, so the order in which the parameter gradients are
// summed does not depend on the number of threads.
constexpr int kRowBlock = 8;
// Key columns per task when dk and dv are summed over query rows.
constexpr int kColumnBlock = 16;

// ---- the sizes of one call, validated at the entry ----------------------------------------------

struct Dims {
  int B = 0, N = 0, H = 0, D = 0;
  int64_t stride = 0;  // elements between consecutive tokens of q, k, v, dq, dk, dv
  PositionScheme scheme = PositionScheme::none;
  bool dape = false;
  int W = 0;  // f's hidden width (DAPE)
  int G = 0;  // g's hidden width (FIRE)
  bool g_leaky = false;
};

void expect_param(const Tensor& t, DType dt, int64_t numel, const char* what,
                  const std::string& expected) {
  DAPE_CHECK(t.defined(), "attention: {} is undefined; expected {}", what, expected);
  DAPE_CHECK(t.dtype == dt, "attention: {} holds {}, the computation runs in {}", what,
             dtype_name(t.dtype), dtype_name(dt));
  DAPE_CHECK(t.numel() == numel, "attention: {} has shape {} ({} elements); expected {}", what,
             t.shape.str(), t.numel(), expected);
}

void expect_activation(const Tensor& t, DType dt, int64_t min_numel, const char* what) {
  DAPE_CHECK(t.defined(), "attention: {} is undefined", what);
  DAPE_CHECK(t.dtype == dt, "attention: {} holds {}, the computation runs in {}", what,
             dtype_name(t.dtype), dtype_name(dt));
  DAPE_CHECK(t.numel() >= min_numel,
             "attention: {} has shape {} ({} elements), fewer than B*N*H*D = {}", what,
             t.shape.str(), t.numel(), min_numel);
}

Dims validate_inputs(const AttentionInputs& in, DType dt) {
  const AttentionShape& s = in.shape;
  DAPE_CHECK(s.batch >= 1 && s.seq_len >= 1 && s.heads >= 1 && s.head_dim >= 1,
             "attention: sizes must be positive, got B={} N={} H={} D={}", s.batch, s.seq_len,
             s.heads, s.head_dim);
  Dims d;
  d.B = s.batch;
  d.N = s.seq_len;
  d.H = s.heads;
  d.D = s.head_dim;
  d.stride = s.qkv_row_stride;
  d.scheme = in.bias.scheme;
  const int64_t HD = int64_t{d.H} * d.D;
  DAPE_CHECK(d.stride >= HD, "attention: qkv_row_stride {} is shorter than a token's H*D = {}",
             d.stride, HD);
  const int64_t numel = int64_t{d.B} * d.N * HD;
  expect_activation(in.q, dt, numel, "q");
  expect_activation(in.k, dt, numel, "k");
  expect_activation(in.v, dt, numel, "v");

  const std::string H = std::to_string(d.H);
  if (d.scheme == PositionScheme::kerple) {
    expect_param(in.bias.kerple_p, dt, d.H, "kerple_p", "[" + H + "]");
    expect_param(in.bias.kerple_a, dt, d.H, "kerple_a", "[" + H + "]");
  } else if (d.scheme == PositionScheme::fire) {
    const auto& f = in.bias;
    DAPE_CHECK(f.fire_b1.defined() && f.fire_b1.numel() >= 1,
               "attention: fire_b1 must be defined with g's width W >= 1 elements");
    d.G = static_cast<int>(f.fire_b1.numel());
    d.g_leaky = f.fire_leaky_relu;
    const std::string G = std::to_string(d.G);
    expect_param(f.fire_c, dt, 1, "fire_c", "a scalar");
    expect_param(f.fire_L_multiplier, dt, 1, "fire_L_multiplier", "a scalar");
    expect_param(f.fire_w1, dt, d.G, "fire_w1", "[" + G + ", 1] (W taken from fire_b1)");
    expect_param(f.fire_b1, dt, d.G, "fire_b1", "[" + G + "]");
    expect_param(f.fire_w2, dt, int64_t{d.H} * d.G, "fire_w2", "[" + H + ", " + G + "]");
    expect_param(f.fire_b2, dt, d.H, "fire_b2", "[" + H + "]");
    DAPE_CHECK(std::isfinite(f.fire_L), "attention: fire_L must be finite, got {}", f.fire_L);
  }
  d.dape = in.dape.enabled;
  if (d.dape) {
    d.W = in.dape.width;
    DAPE_CHECK(d.W >= 1, "attention: DAPE's mlp width must be at least 1, got {}", d.W);
    const std::string W = std::to_string(d.W), H2 = std::to_string(2 * d.H);
    expect_param(in.dape.w1, dt, int64_t{d.W} * 2 * d.H, "dape w1", "[" + W + ", " + H2 + "]");
    expect_param(in.dape.b1, dt, d.W, "dape b1", "[" + W + "]");
    expect_param(in.dape.w2, dt, int64_t{d.H} * d.W, "dape w2", "[" + H + ", " + W + "]");
    expect_param(in.dape.b2, dt, d.H, "dape b2", "[" + H + "]");
  }
  return d;
}

void expect_grad(const Tensor& grad, const Tensor& param, DType dt, const char* what) {
  DAPE_CHECK(grad.defined(), "attention backward: the gradient of {} is undefined", what);
  DAPE_CHECK(grad.dtype == dt, "attention backward: the gradient of {} holds {}, expected {}", what,
             dtype_name(grad.dtype), dtype_name(dt));
  DAPE_CHECK(grad.numel() == param.numel(),
             "attention backward: the gradient of {} has {} elements {}, the parameter {}", what,
             grad.numel(), grad.shape.str(), param.numel());
}

void validate_grads(const Dims& d, const AttentionInputs& in, const AttentionGrads& g, DType dt) {
  const int64_t numel = int64_t{d.B} * d.N * d.H * d.D;
  expect_activation(g.dq, dt, numel, "dq");
  expect_activation(g.dk, dt, numel, "dk");
  expect_activation(g.dv, dt, numel, "dv");
  if (d.scheme == PositionScheme::kerple) {
    expect_grad(g.bias.kerple_p, in.bias.kerple_p, dt, "kerple_p");
    expect_grad(g.bias.kerple_a, in.bias.kerple_a, dt, "kerple_a");
  } else if (d.scheme == PositionScheme::fire) {
    expect_grad(g.bias.fire_c, in.bias.fire_c, dt, "fire_c");
    expect_grad(g.bias.fire_L_multiplier, in.bias.fire_L_multiplier, dt, "fire_L_multiplier");
    expect_grad(g.bias.fire_w1, in.bias.fire_w1, dt, "fire_w1");
    expect_grad(g.bias.fire_b1, in.bias.fire_b1, dt, "fire_b1");
    expect_grad(g.bias.fire_w2, in.bias.fire_w2, dt, "fire_w2");
    expect_grad(g.bias.fire_b2, in.bias.fire_b2, dt, "fire_b2");
  }
  if (d.dape) {
    expect_grad(g.dape.w1, in.dape.w1, dt, "dape w1");
    expect_grad(g.dape.b1, in.dape.b1, dt, "dape b1");
    expect_grad(g.dape.w2, in.dape.w2, dt, "dape w2");
    expect_grad(g.dape.b2, in.dape.b2, dt, "dape b2");
  }
}

// ---- small row kernels (the compiler vectorizes the loops over the key index j) --------------

template <class T>
T dot(const T* __restrict a, const T* __restrict b, int n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < n; ++j) s += a[j] * b[j];
  return s;
}

template <class T>
T sum(const T* __restrict a, int n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < n; ++j) s += a[j];
  return s;
}

// y[j] += alpha · x[j]
template <class T>
void axpy(T* __restrict y, T alpha, const T* __restrict x, int n) {
#pragma omp simd
  for (int j = 0; j < n; ++j) y[j] += alpha * x[j];
}

// A two-layer perceptron applied independently at every column j of a row:
//   z[w][j] = b1[w] + Σ_c w1[w, c]·x[c][j],  act = activation(z),  y[o][j] += b2[o] + Σ_w w2[o,
//   w]·act[w][j]
// f is this with C = 2H inputs (S and B of every head) and O = H outputs; FIRE's g has C = 1
// (the normalized distance u). Rows of z and act are `ld` apart.
template <class T>
void mlp_hidden(int n, int C, int W, int ld, const T* w1, const T* b1, const T* const* x, T* z,
                T* act, bool leaky) {
  for (int w = 0; w < W; ++w) {
    T* __restrict zw = z + static_cast<int64_t>(w) * ld;
    const T bias = b1[w];
#pragma omp simd
    for (int j = 0; j < n; ++j) zw[j] = bias;
    for (int c = 0; c < C; ++c) axpy(zw, w1[static_cast<int64_t>(w) * C + c], x[c], n);
    T* __restrict aw = act + static_cast<int64_t>(w) * ld;
    if (leaky) {
#pragma omp simd
      for (int j = 0; j < n; ++j) aw[j] = am::leaky_relu(zw[j]);
    } else {
#pragma omp simd
      for (int j = 0; j < n; ++j) aw[j] = am::relu(zw[j]);
    }
  }
}

template <class T>
void mlp_output_add(int n, int W, int O, int ld, const T* w2, const T* b2, const T* act,
                    T* const* y) {
  for (int o = 0; o < O; ++o) {
    T* __restrict yo = y[o];
    const T bias = b2[o];
#pragma omp simd
    for (int j = 0; j < n; ++j) yo[j] += bias;
    for (int w = 0; w < W; ++w)
      axpy(yo, w2[static_cast<int64_t>(o) * W + w], act + static_cast<int64_t>(w) * ld, n);
  }
}

// Backward of the perceptron over one row, given dy[o][j]:
//   dw2[o, w] += Σ_j dy[o][j]·act[w][j],  db2[o] += Σ_j dy[o][j]
//   dz[w][j] = (Σ_o w2[o, w]·dy[o][j]) · activation'(z[w][j])
//   dw1[w, c] += Σ_j dz[w][j]·x[c][j],    db1[w] += Σ_j dz[w][j]
//   dx[c][j] = Σ_w w1[w, c]·dz[w][j]      (overwritten)
// Weight gradients go into double partials (one row block's share).
template <class T>
void mlp_backward(int n, int C, int W, int O, int ld, const T* w1, const T* w2, const T* const* x,
                  const T* z, const T* act, const T* const* dy, T* dz, T* const* dx, bool leaky,
                  double* dw1, double* db1, double* dw2, double* db2) {
  for (int o = 0; o < O; ++o) {
    db2[o] += sum(dy[o], n);
    for (int w = 0; w < W; ++w)
      dw2[static_cast<int64_t>(o) * W + w] += dot(dy[o], act + static_cast<int64_t>(w) * ld, n);
  }
  for (int w = 0; w < W; ++w) {
    T* __restrict dzw = dz + static_cast<int64_t>(w) * ld;
#pragma omp simd
    for (int j = 0; j < n; ++j) dzw[j] = 0;
    for (int o = 0; o < O; ++o) axpy(dzw, w2[static_cast<int64_t>(o) * W + w], dy[o], n);
    const T* __restrict zw = z + static_cast<int64_t>(w) * ld;
    if (leaky) {
#pragma omp simd
      for (int j = 0; j < n; ++j) dzw[j] *= am::leaky_relu_grad(zw[j]);
    } else {
#pragma omp simd
      for (int j = 0; j < n; ++j) dzw[j] *= am::relu_grad(zw[j]);
    }
    db1[w] += sum(dzw, n);
    for (int c = 0; c < C; ++c) dw1[static_cast<int64_t>(w) * C + c] += dot(dzw, x[c], n);
  }
  for (int c = 0; c < C; ++c) {
    T* __restrict dxc = dx[c];
#pragma omp simd
    for (int j = 0; j < n; ++j) dxc[j] = 0;
    for (int w = 0; w < W; ++w)
      axpy(dxc, w1[static_cast<int64_t>(w) * C + c], dz + static_cast<int64_t>(w) * ld, n);
  }
}

// ---- position-only quantities, computed once per call ------------------------------------------

// B[h, i, j] for j ≤ i, as one contiguous row per (h, i):
//   alibi, kerple: B depends on i − j only; a per-distance table stored in reverse order
//                  (rev[h][N−1−r] = B at distance r) makes row i the slice starting at N−1−i.
//   fire:          the full [H, N, N] table of g(u(i, j)).
//   none, learned, rope: one row of zeros.
// Kerple's ∂B/∂p and ∂B/∂a are kept in the same reversed layout for backward.
template <class T>
class PositionTable {
 public:
  PositionTable(const Dims& d, const PositionBias& bias) : d_(d) {
    const int N = d.N, H = d.H;
    switch (d.scheme) {
      case PositionScheme::alibi:
        values_.resize(static_cast<size_t>(H) * N);
        for (int h = 0; h < H; ++h) {
          const T slope = am::alibi_slope<T>(h, H);
          for (int r = 0; r < N; ++r) values_[h * N + N - 1 - r] = am::alibi_bias(slope, T(r));
        }
        break;
      case PositionScheme::kerple: {
        values_.resize(static_cast<size_t>(H) * N);
        kerple_dp_.resize(values_.size());
        kerple_da_.resize(values_.size());
        const T* p = bias.kerple_p.ptr<T>();
        const T* a = bias.kerple_a.ptr<T>();
        for (int h = 0; h < H; ++h) {
          const T ph = am::kerple_clamp(p[h]), ah = am::kerple_clamp(a[h]);
          for (int r = 0; r < N; ++r) {
            const size_t at = static_cast<size_t>(h) * N + N - 1 - r;
            values_[at] = am::kerple_bias(ph, ah, T(r));
            kerple_dp_[at] = am::kerple_bias_dp(ah, T(r));
            kerple_da_[at] = am::kerple_bias_da(ph, ah, T(r));
          }
        }
        break;
      }
      case PositionScheme::fire:
        build_fire_table(bias);
        break;
      case PositionScheme::none:
      case PositionScheme::learned:
      case PositionScheme::rope:
        values_.assign(N, T(0));
        break;
    }
  }

  const T* row(int h, int i) const {
    switch (d_.scheme) {
      case PositionScheme::alibi:
      case PositionScheme::kerple:
        return values_.data() + static_cast<size_t>(h) * d_.N + (d_.N - 1 - i);
      case PositionScheme::fire:
        return values_.data() + (static_cast<size_t>(h) * d_.N + i) * d_.N;
      default:
        return values_.data();
    }
  }
  const T* kerple_dp_row(int h, int i) const {
    return kerple_dp_.data() + static_cast<size_t>(h) * d_.N + (d_.N - 1 - i);
  }
  const T* kerple_da_row(int h, int i) const {
    return kerple_da_.data() + static_cast<size_t>(h) * d_.N + (d_.N - 1 - i);
  }

 private:
  void build_fire_table(const PositionBias& bias);

  Dims d_;
  std::vector<T> values_;
  std::vector<T> kerple_dp_, kerple_da_;
};

// FIRE's u(i, j) and its derivatives along one query row, j ∈ [0, i].
template <class T>
struct FireRow {
  std::vector<T> u, du_dc, du_dmult;
  explicit FireRow(int N) : u(N), du_dc(N), du_dmult(N) {}

  void compute(int i, const PositionBias& bias) {
    const T c = bias.fire_c.ptr<T>()[0], mult = bias.fire_L_multiplier.ptr<T>()[0];
    const T L = static_cast<T>(bias.fire_L), eps = static_cast<T>(am::kFireEps);
    for (int j = 0; j <= i; ++j) {
      const auto f = am::fire_distance<T>(T(i), T(i - j), c, mult, L, eps);
      u[j] = f.u;
      du_dc[j] = f.du_dc;
      du_dmult[j] = f.du_dmult;
    }
  }
};

template <class T>
void PositionTable<T>::build_fire_table(const PositionBias& bias) {
  const int N = d_.N, H = d_.H, G = d_.G;
  values_.assign(static_cast<size_t>(H) * N * N, T(0));
  const T* w1 = bias.fire_w1.ptr<T>();
  const T* b1 = bias.fire_b1.ptr<T>();
  const T* w2 = bias.fire_w2.ptr<T>();
  const T* b2 = bias.fire_b2.ptr<T>();
#pragma omp parallel
  {
    FireRow<T> fr(N);
    std::vector<T> z(static_cast<size_t>(G) * N), act(z.size());
    std::vector<T*> out(H);
#pragma omp for schedule(dynamic, 1)
    for (int r = 0; r < N; ++r) {
      const int i = N - 1 - r;  // longest rows first
      const int n = i + 1;
      fr.compute(i, bias);
      const T* x = fr.u.data();
      mlp_hidden(n, 1, G, N, w1, b1, &x, z.data(), act.data(), d_.g_leaky);
      for (int h = 0; h < H; ++h) out[h] = values_.data() + (static_cast<size_t>(h) * N + i) * N;
      mlp_output_add(n, G, H, N, w2, b2, act.data(), out.data());
    }
  }
}

// ---- learned-parameter gradients: flat layout, one double partial per row block ----------------

struct ParamLayout {
  int64_t dape_w1 = 0, dape_b1 = 0, dape_w2 = 0, dape_b2 = 0;
  int64_t kerple_p = 0, kerple_a = 0;
  int64_t fire_c = 0, fire_mult = 0, fire_w1 = 0, fire_b1 = 0, fire_w2 = 0, fire_b2 = 0;
  int64_t total = 0;

  explicit ParamLayout(const Dims& d) {
    auto take = [&](int64_t n) {
      const int64_t at = total;
      total += n;
      return at;
    };
    if (d.dape) {
      dape_w1 = take(int64_t{d.W} * 2 * d.H);
      dape_b1 = take(d.W);
      dape_w2 = take(int64_t{d.H} * d.W);
      dape_b2 = take(d.H);
    }
    if (d.scheme == PositionScheme::kerple) {
      kerple_p = take(d.H);
      kerple_a = take(d.H);
    } else if (d.scheme == PositionScheme::fire) {
      fire_c = take(1);
      fire_mult = take(1);
      fire_w1 = take(d.G);
      fire_b1 = take(d.G);
      fire_w2 = take(int64_t{d.H} * d.G);
      fire_b2 = take(d.H);
    }
  }
};

// grad[k] += Σ_blocks partial[block][k], blocks summed in order.
template <class T>
void add_partials(const Tensor& grad, const std::vector<double>& partials, int blocks,
                  int64_t stride, int64_t offset) {
  T* g = grad.ptr<T>();
  for (int64_t k = 0; k < grad.numel(); ++k) {
    double s = 0;
    for (int b = 0; b < blocks; ++b) s += partials[static_cast<size_t>(b) * stride + offset + k];
    g[k] += static_cast<T>(s);
  }
}

// ---- the per-call state: inputs, materialized [H, N, N] tensors, per-thread rows ---------------

template <class T>
class ReferenceAttention {
 public:
  ReferenceAttention(const AttentionInputs& in, const Dims& d)
      : in_(in), d_(d), table_(d, in.bias), scale_(T(1) / std::sqrt(static_cast<T>(d.D))) {
    const size_t hnn = static_cast<size_t>(d.H) * d.N * d.N;
    S_.resize(hnn);
    P_.resize(hnn);
    Kt_.resize(static_cast<size_t>(d.H) * d.D * d.N);
    Vt_.resize(Kt_.size());
  }

  void forward(T* out, T* lse);
  void backward(const T* out, const T* lse, const T* dout, const AttentionGrads& grads);

 private:
  // Per-thread scratch rows, each N long: f's hidden layer and the backward's row gradients.
  struct Rows {
    std::vector<T> z, act, dz;  // [W][N] (f) or [G][N] (g), whichever is wider
    std::vector<T> dp, db, dx;  // [H][N], [H][N], [2H][N]
    std::vector<T> fire_du;     // [N]
    FireRow<T> fire;
    std::vector<const T*> x;  // f's input rows: S of every head, then B of every head
    std::vector<T*> y, dy, dxp, dbp;
    Rows(const Dims& d)
        : z(static_cast<size_t>(std::max(d.W, d.G)) * d.N),
          act(z.size()),
          dz(z.size()),
          dp(static_cast<size_t>(d.H) * d.N),
          db(dp.size()),
          dx(static_cast<size_t>(2 * d.H) * d.N),
          fire_du(d.N),
          fire(d.scheme == PositionScheme::fire ? d.N : 0),
          x(2 * d.H),
          y(d.H),
          dy(d.H),
          dxp(2 * d.H),
          dbp(d.H) {}
  };

  T* S_row(int h, int i) { return S_.data() + (static_cast<size_t>(h) * d_.N + i) * d_.N; }
  T* P_row(int h, int i) { return P_.data() + (static_cast<size_t>(h) * d_.N + i) * d_.N; }
  const T* q_at(int b, int n, int h) const {
    return q_ + (int64_t{b} * d_.N + n) * d_.stride + int64_t{h} * d_.D;
  }
  const T* k_at(int b, int n, int h) const {
    return k_ + (int64_t{b} * d_.N + n) * d_.stride + int64_t{h} * d_.D;
  }
  const T* v_at(int b, int n, int h) const {
    return v_ + (int64_t{b} * d_.N + n) * d_.stride + int64_t{h} * d_.D;
  }
  int64_t out_index(int b, int n, int h) const {
    return ((int64_t{b} * d_.N + n) * d_.H + h) * d_.D;
  }

  void transpose_kv(int b);
  void logits_row(int b, int i, Rows& r);
  void pv_row(int b, int i, T* out);
  void backward_row(int b, int i, const T* out, const T* lse, const T* dout, T* dq, Rows& r,
                    double* partial);
  void scheme_backward_row(int i, Rows& r, const T* const* dB, double* partial);
  void dkdv_block(int b, int h, int j0, const T* dout, T* dk, T* dv, std::vector<T>& acc);

  const AttentionInputs& in_;
  Dims d_;
  PositionTable<T> table_;
  T scale_;  // 1/sqrt(D)
  const T* q_ = in_.q.template ptr<T>();
  const T* k_ = in_.k.template ptr<T>();
  const T* v_ = in_.v.template ptr<T>();
  // One batch element at a time: S, and A turned into P in place, as [H, N, N] (only j ≤ i is
  // written); dS for backward; K and V transposed to [H, D, N] so rows run over j.
  std::vector<T> S_, P_, dS_, Kt_, Vt_;
};

template <class T>
void ReferenceAttention<T>::transpose_kv(int b) {
  const int N = d_.N, D = d_.D;
#pragma omp for schedule(static)
  for (int h = 0; h < d_.H; ++h)
    for (int j = 0; j < N; ++j) {
      const T* kj = k_at(b, j, h);
      const T* vj = v_at(b, j, h);
      for (int e = 0; e < D; ++e) {
        Kt_[(static_cast<size_t>(h) * D + e) * N + j] = kj[e];
        Vt_[(static_cast<size_t>(h) * D + e) * N + j] = vj[e];
      }
    }
}

// S[:, i, :i+1] and A[:, i, :i+1] = S + B (+ f([S; B])) into P's storage.
template <class T>
void ReferenceAttention<T>::logits_row(int b, int i, Rows& r) {
  const int N = d_.N, D = d_.D, H = d_.H, n = i + 1;
  for (int h = 0; h < H; ++h) {
    T* __restrict s = S_row(h, i);
    const T* q = q_at(b, i, h);
#pragma omp simd
    for (int j = 0; j < n; ++j) s[j] = 0;
    for (int e = 0; e < D; ++e) axpy(s, q[e], Kt_.data() + (static_cast<size_t>(h) * D + e) * N, n);
#pragma omp simd
    for (int j = 0; j < n; ++j) s[j] *= scale_;
    const T* __restrict bias = table_.row(h, i);
    T* __restrict a = P_row(h, i);
#pragma omp simd
    for (int j = 0; j < n; ++j) a[j] = s[j] + bias[j];
  }
  if (d_.dape) {
    for (int h = 0; h < H; ++h) {
      r.x[h] = S_row(h, i);
      r.x[H + h] = table_.row(h, i);
      r.y[h] = P_row(h, i);
    }
    mlp_hidden(n, 2 * H, d_.W, N, in_.dape.w1.template ptr<T>(), in_.dape.b1.template ptr<T>(),
               r.x.data(), r.z.data(), r.act.data(), /*leaky=*/true);
    mlp_output_add(n, d_.W, H, N, in_.dape.w2.template ptr<T>(), in_.dape.b2.template ptr<T>(),
                   r.act.data(), r.y.data());
  }
}

// out[b, i, h, :] = Σ_j P[h, i, j] v[b, j, h, :]
template <class T>
void ReferenceAttention<T>::pv_row(int b, int i, T* out) {
  for (int h = 0; h < d_.H; ++h) {
    T* o = out + out_index(b, i, h);
    const T* p = P_row(h, i);
    std::fill(o, o + d_.D, T(0));
    for (int j = 0; j <= i; ++j) axpy(o, p[j], v_at(b, j, h), d_.D);
  }
}

template <class T>
void ReferenceAttention<T>::forward(T* out, T* lse) {
  const int N = d_.N, H = d_.H;
#pragma omp parallel
  {
    Rows r(d_);
    for (int b = 0; b < d_.B; ++b) {
      transpose_kv(b);  // ends with a barrier
#pragma omp for schedule(dynamic, 1)
      for (int t = 0; t < N; ++t) {
        const int i = N - 1 - t;  // longest rows first
        const int n = i + 1;
        logits_row(b, i, r);
        for (int h = 0; h < H; ++h) {
          T* a = P_row(h, i);
          T m = a[0];
          for (int j = 1; j < n; ++j) m = std::max(m, a[j]);
          for (int j = 0; j < n; ++j) a[j] = std::exp(a[j] - m);
          const T total = sum(a, n);
          const T inv = T(1) / total;
#pragma omp simd
          for (int j = 0; j < n; ++j) a[j] *= inv;
          lse[(int64_t{b} * H + h) * N + i] = m + std::log(total);
        }
        pv_row(b, i, out);
      }
    }
  }
}

// Learned position parameters' gradients from the row's dB[h][j].
template <class T>
void ReferenceAttention<T>::scheme_backward_row(int i, Rows& r, const T* const* dB,
                                                double* partial) {
  const int n = i + 1, H = d_.H, N = d_.N;
  const ParamLayout L(d_);
  if (d_.scheme == PositionScheme::kerple) {
    for (int h = 0; h < H; ++h) {
      partial[L.kerple_p + h] += dot(dB[h], table_.kerple_dp_row(h, i), n);
      partial[L.kerple_a + h] += dot(dB[h], table_.kerple_da_row(h, i), n);
    }
  } else if (d_.scheme == PositionScheme::fire) {
    const auto& f = in_.bias;
    r.fire.compute(i, f);
    const T* x = r.fire.u.data();
    const int G = d_.G;
    mlp_hidden(n, 1, G, N, f.fire_w1.template ptr<T>(), f.fire_b1.template ptr<T>(), &x, r.z.data(),
               r.act.data(), d_.g_leaky);
    T* du = r.fire_du.data();
    mlp_backward(n, 1, G, H, N, f.fire_w1.template ptr<T>(), f.fire_w2.template ptr<T>(), &x,
                 r.z.data(), r.act.data(), dB, r.dz.data(), &du, d_.g_leaky, partial + L.fire_w1,
                 partial + L.fire_b1, partial + L.fire_w2, partial + L.fire_b2);
    partial[L.fire_c] += dot(du, r.fire.du_dc.data(), n);
    partial[L.fire_mult] += dot(du, r.fire.du_dmult.data(), n);
  }
}

// Row i of backward: recompute the logits and P, then dA = P ⊙ (dP − Δ), f's backward, dS and dB,
// dq; dS is stored for the column pass (dk), P for dv.
template <class T>
void ReferenceAttention<T>::backward_row(int b, int i, const T* out, const T* lse, const T* dout,
                                         T* dq, Rows& r, double* partial) {
  const int N = d_.N, D = d_.D, H = d_.H, n = i + 1;
  logits_row(b, i, r);  // S row, A row in P's storage, f's hidden layer in r.z / r.act
  for (int h = 0; h < H; ++h) {
    T* __restrict p = P_row(h, i);
    const T l = lse[(int64_t{b} * H + h) * N + i];
    for (int j = 0; j < n; ++j) p[j] = std::exp(p[j] - l);
    // dP[j] = dout_i · v_j; Δ = dout_i · out_i = Σ_j P dP.
    const T* g = dout + out_index(b, i, h);
    T* __restrict dp = r.dp.data() + static_cast<size_t>(h) * N;
#pragma omp simd
    for (int j = 0; j < n; ++j) dp[j] = 0;
    for (int e = 0; e < D; ++e)
      axpy(dp, g[e], Vt_.data() + (static_cast<size_t>(h) * D + e) * N, n);
    const T delta = dot(g, out + out_index(b, i, h), D);
    // dA, written where dS will live.
    T* __restrict da = dS_.data() + (static_cast<size_t>(h) * N + i) * N;
#pragma omp simd
    for (int j = 0; j < n; ++j) da[j] = p[j] * (dp[j] - delta);
  }
  const ParamLayout L(d_);
  const bool learned_bias =
      d_.scheme == PositionScheme::kerple || d_.scheme == PositionScheme::fire;
  if (d_.dape) {
    // f's output gradient is dA; its input gradient dx splits into S's (first H) and B's.
    for (int h = 0; h < H; ++h) {
      r.dy[h] = dS_.data() + (static_cast<size_t>(h) * N + i) * N;
      r.dxp[h] = r.dx.data() + static_cast<size_t>(h) * N;
      r.dxp[H + h] = r.dx.data() + static_cast<size_t>(H + h) * N;
    }
    mlp_backward(n, 2 * H, d_.W, H, N, in_.dape.w1.template ptr<T>(), in_.dape.w2.template ptr<T>(),
                 r.x.data(), r.z.data(), r.act.data(), r.dy.data(), r.dz.data(), r.dxp.data(),
                 /*leaky=*/true, partial + L.dape_w1, partial + L.dape_b1, partial + L.dape_w2,
                 partial + L.dape_b2);
    for (int h = 0; h < H; ++h) {
      T* __restrict ds = r.dy[h];
      const T* __restrict dxs = r.dxp[h];
      const T* __restrict dxb = r.dxp[H + h];
      T* __restrict db = r.db.data() + static_cast<size_t>(h) * N;
#pragma omp simd
      for (int j = 0; j < n; ++j) {
        db[j] = ds[j] + dxb[j];
        ds[j] += dxs[j];
      }
      r.dbp[h] = db;
    }
  } else {
    for (int h = 0; h < H; ++h) r.dbp[h] = dS_.data() + (static_cast<size_t>(h) * N + i) * N;
  }
  if (learned_bias) scheme_backward_row(i, r, r.dbp.data(), partial);
  // dq_i = Σ_j dS[j] k_j / sqrt(D)
  for (int h = 0; h < H; ++h) {
    const T* ds = dS_.data() + (static_cast<size_t>(h) * N + i) * N;
    T* g = dq + (int64_t{b} * N + i) * d_.stride + int64_t{h} * D;
    std::fill(g, g + D, T(0));
    for (int j = 0; j < n; ++j) axpy(g, ds[j], k_at(b, j, h), D);
    for (int e = 0; e < D; ++e) g[e] *= scale_;
  }
}

// dk_j = Σ_{i ≥ j} dS[h, i, j] q_i / sqrt(D) and dv_j = Σ_{i ≥ j} P[h, i, j] dout_i for the key
// columns [j0, j0 + kColumnBlock), summed over i in order.
template <class T>
void ReferenceAttention<T>::dkdv_block(int b, int h, int j0, const T* dout, T* dk, T* dv,
                                       std::vector<T>& acc) {
  const int N = d_.N, D = d_.D;
  const int j1 = std::min(N, j0 + kColumnBlock), width = j1 - j0;
  T* ak = acc.data();
  T* av = acc.data() + static_cast<size_t>(kColumnBlock) * D;
  std::fill(acc.begin(), acc.end(), T(0));
  for (int i = j0; i < N; ++i) {
    const T* ds = dS_.data() + (static_cast<size_t>(h) * N + i) * N;
    const T* p = P_row(h, i);
    const T* q = q_at(b, i, h);
    const T* g = dout + out_index(b, i, h);
    const int last = std::min(i, j1 - 1);
    for (int j = j0; j <= last; ++j) {
      axpy(ak + static_cast<size_t>(j - j0) * D, ds[j], q, D);
      axpy(av + static_cast<size_t>(j - j0) * D, p[j], g, D);
    }
  }
  for (int c = 0; c < width; ++c) {
    T* k = dk + (int64_t{b} * N + j0 + c) * d_.stride + int64_t{h} * D;
    T* v = dv + (int64_t{b} * N + j0 + c) * d_.stride + int64_t{h} * D;
    for (int e = 0; e < D; ++e) {
      k[e] = ak[static_cast<size_t>(c) * D + e] * scale_;
      v[e] = av[static_cast<size_t>(c) * D + e];
    }
  }
}

template <class T>
void ReferenceAttention<T>::backward(const T* out, const T* lse, const T* dout,
                                     const AttentionGrads& grads) {
  const int N = d_.N, H = d_.H;
  dS_.assign(static_cast<size_t>(H) * N * N, T(0));
  T* dq = grads.dq.template ptr<T>();
  T* dk = grads.dk.template ptr<T>();
  T* dv = grads.dv.template ptr<T>();
  const ParamLayout L(d_);
  const int blocks = (N + kRowBlock - 1) / kRowBlock;
  const int column_blocks = (N + kColumnBlock - 1) / kColumnBlock;
  std::vector<double> partials(static_cast<size_t>(blocks) * L.total, 0.0);
#pragma omp parallel
  {
    Rows r(d_);
    std::vector<T> acc(static_cast<size_t>(2) * kColumnBlock * d_.D);
    for (int b = 0; b < d_.B; ++b) {
      transpose_kv(b);  // ends with a barrier
#pragma omp for schedule(dynamic, 1)
      for (int t = 0; t < blocks; ++t) {
        const int block = blocks - 1 - t;  // longest rows first
        double* partial = partials.data() + static_cast<size_t>(block) * L.total;
        const int i_end = std::min(N, (block + 1) * kRowBlock);
        for (int i = block * kRowBlock; i < i_end; ++i)
          backward_row(b, i, out, lse, dout, dq, r, partial);
      }  // barrier: dS and P complete for this batch element
#pragma omp for schedule(dynamic, 1)
      for (int t = 0; t < H * column_blocks; ++t) {
        const int h = t / column_blocks, jb = t % column_blocks;
        dkdv_block(b, h, jb * kColumnBlock, dout, dk, dv, acc);
      }  // barrier before the next batch element overwrites S, P, dS
    }
  }
  if (d_.dape) {
    add_partials<T>(grads.dape.w1, partials, blocks, L.total, L.dape_w1);
    add_partials<T>(grads.dape.b1, partials, blocks, L.total, L.dape_b1);
    add_partials<T>(grads.dape.w2, partials, blocks, L.total, L.dape_w2);
    add_partials<T>(grads.dape.b2, partials, blocks, L.total, L.dape_b2);
  }
  if (d_.scheme == PositionScheme::kerple) {
    add_partials<T>(grads.bias.kerple_p, partials, blocks, L.total, L.kerple_p);
    add_partials<T>(grads.bias.kerple_a, partials, blocks, L.total, L.kerple_a);
  } else if (d_.scheme == PositionScheme::fire) {
    add_partials<T>(grads.bias.fire_c, partials, blocks, L.total, L.fire_c);
    add_partials<T>(grads.bias.fire_L_multiplier, partials, blocks, L.total, L.fire_mult);
    add_partials<T>(grads.bias.fire_w1, partials, blocks, L.total, L.fire_w1);
    add_partials<T>(grads.bias.fire_b1, partials, blocks, L.total, L.fire_b1);
    add_partials<T>(grads.bias.fire_w2, partials, blocks, L.total, L.fire_w2);
    add_partials<T>(grads.bias.fire_b2, partials, blocks, L.total, L.fire_b2);
  }
}

}  // namespace

template <class T>
void attention_reference_forward(const AttentionInputs& in, T* out, T* lse) {
  const Dims d = validate_inputs(in, dtype_of<T>());
  DAPE_CHECK(out != nullptr && lse != nullptr, "attention forward: out and lse must be defined");
  ReferenceAttention<T>(in, d).forward(out, lse);
}

template <class T>
void attention_reference_backward(const AttentionInputs& in, const T* out, const T* lse,
                                  const T* dout, const AttentionGrads& grads) {
  const Dims d = validate_inputs(in, dtype_of<T>());
  validate_grads(d, in, grads, dtype_of<T>());
  DAPE_CHECK(out != nullptr && lse != nullptr && dout != nullptr,
             "attention backward: out, lse and dout must be defined");
  ReferenceAttention<T>(in, d).backward(out, lse, dout, grads);
}

template void attention_reference_forward<float>(const AttentionInputs&, float*, float*);
template void attention_reference_forward<double>(const AttentionInputs&, double*, double*);
template void attention_reference_backward<float>(const AttentionInputs&, const float*,
                                                  const float*, const float*,
                                                  const AttentionGrads&);
template void attention_reference_backward<double>(const AttentionInputs&, const double*,
                                                   const double*, const double*,
                                                   const AttentionGrads&);

}  // namespace dape::cpu
