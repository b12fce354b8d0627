#include "kernels/cpu/attention_reference.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "kernels/attention_checks.h"
#include "kernels/attention_math.h"
#include "kernels/cpu/simd_rows.h"

namespace dape::cpu {
namespace {

namespace am = dape::attention_math;

// Query rows per gradient partial. Fixed, so the order in which the parameter gradients are
// summed does not depend on the number of threads.
constexpr int kRowBlock = 8;
// Query rows computed together, so that K and V are streamed once per tile rather than per row.
// kRowBlock is a multiple of it, so tiles never straddle blocks.
constexpr int kQueryTile = 4;
static_assert(kRowBlock % kQueryTile == 0);
// Key columns per work item when dk and dv are summed over query rows.
constexpr int kColumnBlock = 16;

// ---- the sizes of one call, validated at the entry ----------------------------------------------

struct Dims {
  int B = 0;
  int N = 0;   // query rows per sequence
  int M = 0;   // keys per sequence (kv_len), >= N
  int O = 0;   // absolute position of query row 0: M − N
  int H = 0;   // every head: f's input and output, q and k
  int H0 = 0;  // the first local head
  int Hl = 0;  // local heads: A, softmax, P·V; v, out, lse, dout and dv
  int D = 0;
  // Elements between consecutive tokens (row) and sequences (batch) of q/dq, k/dk and v/dv.
  int64_t q_row = 0, q_batch = 0, k_row = 0, k_batch = 0, v_row = 0, v_batch = 0;
  PositionScheme scheme = PositionScheme::none;
  bool dape = false;
  int W = 0;  // f's hidden width (DAPE)
  int G = 0;  // g's hidden width (FIRE)
  bool g_leaky = false;
  bool backward = false;  // gradients wanted: backward's tables and scratch are built

  bool local(int h) const { return h >= H0 && h < H0 + Hl; }
};

// The sizes of a call whose arguments check_attention_inputs accepted.
Dims validate_inputs(const AttentionInputs& in, DType dt) {
  check_attention_inputs(in, dt);
  const AttentionShape& s = in.shape;
  Dims d;
  d.B = s.batch;
  d.N = s.seq_len;
  d.M = s.keys();
  d.O = s.query_offset();
  d.H = s.heads;
  d.H0 = s.head_begin;
  d.Hl = s.local();
  d.D = s.head_dim;
  d.q_row = s.q_stride();
  d.q_batch = s.q_batch();
  d.k_row = s.k_stride();
  d.k_batch = s.k_batch();
  d.v_row = s.v_stride();
  d.v_batch = s.v_batch();
  d.scheme = in.bias.scheme;
  if (d.scheme == PositionScheme::fire) {
    d.G = static_cast<int>(in.bias.fire_b1.numel());
    d.g_leaky = in.bias.fire_leaky_relu;
  }
  d.dape = in.dape.enabled;
  if (d.dape) d.W = in.dape.width;
  return d;
}

// ---- row operations ---------------------------------------------------------------------------

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

// ---- position-only quantities, computed once per call ------------------------------------------

// FIRE's u(i, j) and its derivatives along the row of query position i: j ∈ [0, i], zero up to
// np.
template <class T>
struct FireRow {
  std::vector<T> u, du_dc, du_dmult;
  explicit FireRow(int64_t ld) : u(ld), du_dc(ld), du_dmult(ld) {}

  void compute(int i, const PositionBias& bias, int np) {
    const T c = bias.fire_c.ptr<T>()[0], mult = bias.fire_L_multiplier.ptr<T>()[0];
    const T L = static_cast<T>(bias.fire_L), eps = static_cast<T>(am::kFireEps);
    for (int j = 0; j <= i; ++j) {
      const auto f = am::fire_distance<T>(T(i), T(i - j), c, mult, L, eps);
      u[j] = f.u;
      du_dc[j] = f.du_dc;
      du_dmult[j] = f.du_dmult;
    }
    for (int j = i + 1; j < np; ++j) u[j] = du_dc[j] = du_dmult[j] = 0;
  }
};

// B[h, i, j] for j ≤ i, as one contiguous row per (head h, query row t), at the query's absolute
// position i = O + t:
//   alibi, kerple: B depends on i − j only; a per-distance table of the M distances stored in
//                  reverse order (rev[h][M−1−r] = B at distance r) makes the row of position i
//                  the slice starting at M−1−i.
//   fire:          the full [H, N, M] table of g(u(i, j)).
//   none, learned, rope: one row of zeros.
// Kerple's ∂B/∂p and ∂B/∂a are kept in the same reversed layout (backward only). The per-distance
// tables end with zeros, so a row can be read whole vectors at a time up to its tile's padded
// length.
template <class T>
class PositionTable {
 public:
  PositionTable(const Dims& d, const PositionBias& bias) : d_(d) {
    const int M = d.M, H = d.H;
    const size_t distances = static_cast<size_t>(H) * M + simd::kLanes<T> + kQueryTile;
    switch (d.scheme) {
      case PositionScheme::alibi:
        values_.assign(distances, T(0));
        for (int h = 0; h < H; ++h) {
          const T slope = am::alibi_slope<T>(h, H);
          for (int r = 0; r < M; ++r) values_[h * M + M - 1 - r] = am::alibi_bias(slope, T(r));
        }
        break;
      case PositionScheme::kerple: {
        values_.assign(distances, T(0));
        if (d.backward) {
          kerple_dp_.assign(distances, T(0));
          kerple_da_.assign(distances, T(0));
        }
        const T* p = bias.kerple_p.ptr<T>();
        const T* a = bias.kerple_a.ptr<T>();
        for (int h = 0; h < H; ++h) {
          const T ph = am::kerple_clamp(p[h]), ah = am::kerple_clamp(a[h]);
          for (int r = 0; r < M; ++r) {
            const size_t at = static_cast<size_t>(h) * M + M - 1 - r;
            values_[at] = am::kerple_bias(ph, ah, T(r));
            if (!d.backward) continue;
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
        values_.assign(M, T(0));
        break;
    }
  }

  // B[h, O + t, 0..O + t] for query row t.
  const T* row(int h, int t) const {
    switch (d_.scheme) {
      case PositionScheme::alibi:
      case PositionScheme::kerple:
        return values_.data() + distance_row(h, t);
      case PositionScheme::fire:
        return values_.data() + (static_cast<size_t>(h) * d_.N + t) * d_.M;
      default:
        return values_.data();
    }
  }
  // ∂B/∂p and ∂B/∂a along query row t of head h; readable up to the row's padded length.
  const T* kerple_dp_row(int h, int t) const { return kerple_dp_.data() + distance_row(h, t); }
  const T* kerple_da_row(int h, int t) const { return kerple_da_.data() + distance_row(h, t); }

 private:
  // Where the reversed distances of head h start for query row t: M − 1 − (O + t).
  size_t distance_row(int h, int t) const {
    return static_cast<size_t>(h) * d_.M + (d_.M - 1 - (d_.O + t));
  }
  void build_fire_table(const PositionBias& bias);

  Dims d_;
  std::vector<T> values_;
  std::vector<T> kerple_dp_, kerple_da_;
};

template <class T>
void PositionTable<T>::build_fire_table(const PositionBias& bias) {
  const int N = d_.N, M = d_.M, H = d_.H, G = d_.G;
  const int64_t ld = simd::padded<T>(M);
  values_.assign(static_cast<size_t>(H) * N * M, T(0));
  const T* w1 = bias.fire_w1.ptr<T>();
  const T* b1 = bias.fire_b1.ptr<T>();
  const T* w2 = bias.fire_w2.ptr<T>();
  const T* b2 = bias.fire_b2.ptr<T>();
#pragma omp parallel
  {
    FireRow<T> fr(ld);
    std::vector<T> z(G * ld), act(G * ld), g(H * ld);
#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < N; ++item) {
      const int t = N - 1 - item;  // longest rows first
      const int i = d_.O + t, n = i + 1, np = simd::padded<T>(n);
      fr.compute(i, bias, np);
      simd::panel_gemm(G, 1, w1, 1, 1, fr.u.data(), ld, z.data(), ld, np, b1, false);
      simd::panel_activate(z.data(), act.data(), G, ld, np,
                           am::activation_negative_slope<T>(d_.g_leaky));
      simd::panel_gemm(H, G, w2, G, 1, act.data(), ld, g.data(), ld, np, b2, false);
      for (int h = 0; h < H; ++h)
        std::copy(g.data() + h * ld, g.data() + h * ld + n,
                  values_.data() + (static_cast<size_t>(h) * N + t) * M);
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

// ---- the per-call state -----------------------------------------------------------------------

// One thread's scratch. Rows are `ld` = M padded to whole SIMD vectors. For each of the
// kQueryTile query rows of a tile: f's input panel X = [S; B] of every head (2H rows), the logits
// A (then P) of the local heads, backward's dP and dA of the local heads, and [dS; dB] of every
// head (2H rows, which first hold f's input gradient); f's hidden layer and g's rows are per
// query row. Past the row's last key j = i, X is zero, so f computes finite values there that
// are never stored, and P and every gradient are zero, so those columns add nothing.
template <class T>
struct RowScratch {
  std::vector<T> x, a, dp, da, dx;  // per tile row: 2H, Hl, Hl, Hl, 2H rows (dp, da, dx: backward)
  std::vector<T> z, act, dz, du;    // one query row: max(W, G) rows, and g's du
  FireRow<T> fire;
  std::vector<simd::Vec<T>> grad;  // lane accumulators of the parameter gradients

  RowScratch(const Dims& d, int64_t ld, int64_t params)
      : x(kQueryTile * 2 * d.H * ld),
        a(kQueryTile * d.Hl * ld),
        dp(d.backward ? a.size() : 0),
        da(dp.size()),
        dx(d.backward ? x.size() : 0),
        z(std::max(d.W, d.G) * ld),
        act(z.size()),
        dz(z.size()),
        du(ld),
        fire(d.scheme == PositionScheme::fire ? ld : 0),
        grad(params) {}
};

template <class T>
class ReferenceAttention {
 public:
  ReferenceAttention(const AttentionInputs& in, const Dims& d)
      : in_(in),
        d_(d),
        layout_(d),
        ld_(simd::padded<T>(d.M)),
        table_(d, in.bias),
        scale_(T(1) / std::sqrt(static_cast<T>(d.D))),
        q_(in.q.ptr<T>()),
        k_(in.k.ptr<T>()),
        v_(in.v.ptr<T>()),
        Kt_(transposed_buffer(d.H * d.D)),
        Vt_(transposed_buffer(d.Hl * d.D)) {}

  void forward(T* out, T* lse);
  void backward(const T* out, const T* lse, const T* dout, const AttentionGrads& grads);

 private:
  using Rows = RowScratch<T>;

  // Token rows: query row t of q (and dq), key j of k (and dk) for head h of all H, key j of v
  // (and dv) for local head hl.
  int64_t q_offset(int b, int t, int h) const {
    return b * d_.q_batch + t * d_.q_row + int64_t{h} * d_.D;
  }
  int64_t k_offset(int b, int j, int h) const {
    return b * d_.k_batch + j * d_.k_row + int64_t{h} * d_.D;
  }
  int64_t v_offset(int b, int j, int hl) const {
    return b * d_.v_batch + j * d_.v_row + int64_t{hl} * d_.D;
  }
  const T* q_at(int b, int t, int h) const { return q_ + q_offset(b, t, h); }
  const T* k_at(int b, int j, int h) const { return k_ + k_offset(b, j, h); }
  const T* v_at(int b, int j, int hl) const { return v_ + v_offset(b, j, hl); }
  // out and dout [B, N, Hl, D], lse [B, Hl, N].
  int64_t out_index(int b, int t, int hl) const {
    return ((int64_t{b} * d_.N + t) * d_.Hl + hl) * d_.D;
  }
  int64_t lse_index(int b, int t, int hl) const { return (int64_t{b} * d_.Hl + hl) * d_.N + t; }
  const T* Kt(int h) const { return Kt_.get() + static_cast<size_t>(h) * d_.D * ld_; }
  const T* Vt(int hl) const { return Vt_.get() + static_cast<size_t>(hl) * d_.D * ld_; }
  // `rows` rows of ld_: transpose_kv writes the columns below M of every batch element, so only
  // the padding columns are zeroed here (zeroing all of it would cost as much as the transpose).
  std::unique_ptr<T[]> transposed_buffer(int rows) const {
    std::unique_ptr<T[]> p(new T[static_cast<size_t>(rows) * ld_]);
    for (int r = 0; r < rows; ++r)
      std::fill(p.get() + r * ld_ + d_.M, p.get() + (r + 1) * ld_, T(0));
    return p;
  }
  T* P_row(int hl, int t) { return P_.data() + (static_cast<size_t>(hl) * d_.N + t) * d_.M; }
  T* dS_row(int h, int t) { return dS_.data() + (static_cast<size_t>(h) * d_.N + t) * d_.M; }
  // Strides between the panels of consecutive tile rows.
  int64_t x_stride() const { return 2 * int64_t{d_.H} * ld_; }
  int64_t a_stride() const { return int64_t{d_.Hl} * ld_; }
  // Keys that query row t sees: j ≤ O + t.
  int keys_of_row(int t) const { return d_.O + t + 1; }

  void transpose_kv(int b);
  void tile_scores(int b, int t0, int R, int np, Rows& r);
  void logits_row(int t, int np, T* x, T* a, Rows& r);
  void forward_tile(int b, int t0, int R, Rows& r, T* out, T* lse);
  void backward_tile(int b, int t0, int R, const T* out, const T* lse, const T* dout, T* dq,
                     Rows& r);
  void backward_row(int b, int t, int np, int tile_row, const T* out, const T* lse, const T* dout,
                    Rows& r);
  void scheme_backward_row(int t, int np, const T* dB, Rows& r);
  void flush_gradients(Rows& r, double* partial);
  template <int COLS, bool WITH_V>
  void dkdv_columns(int b, int h, int first_row, int jc, const T* dsT, const T* pT, const T* dout,
                    T* dk, T* dv);
  template <bool WITH_V>
  void dkdv_range(int b, int h, int j0, int j1, int first_row, const T* dsT, const T* pT,
                  const T* dout, T* dk, T* dv);
  void dkdv_block(int b, int h, int j0, const T* dout, T* dk, T* dv, std::vector<T>& columns);

  const AttentionInputs& in_;
  Dims d_;
  ParamLayout layout_;
  int64_t ld_;
  PositionTable<T> table_;
  T scale_;  // 1/sqrt(D)
  const T* q_;
  const T* k_;
  const T* v_;
  // One batch element at a time: K (every head) and V (local heads) transposed to [heads, D, ld]
  // (zero past M), so that the rows run over the key index j. Backward also materializes P
  // ([Hl, N, M]) and dS ([H, N, M]), j ≤ O + t written, for the pass over key columns that sums
  // dk and dv.
  std::unique_ptr<T[]> Kt_, Vt_;
  std::vector<T> P_, dS_;
};

// Blocks of kTransposeKeys keys at a time: their rows are read once (and stay in cache across the
// head dimension) while each transposed row gets a contiguous run of writes.
template <class T>
void ReferenceAttention<T>::transpose_kv(int b) {
  constexpr int kTransposeKeys = 16;
  const int M = d_.M, D = d_.D;
  auto transpose = [&](T* dst, auto row_of) {  // dst[e * ld + j] = row_of(j)[e]
    for (int j0 = 0; j0 < M; j0 += kTransposeKeys) {
      const int j1 = std::min(M, j0 + kTransposeKeys);
      for (int e = 0; e < D; ++e)
        for (int j = j0; j < j1; ++j) dst[static_cast<size_t>(e) * ld_ + j] = row_of(j)[e];
    }
  };
#pragma omp for schedule(static)
  for (int h = 0; h < d_.H; ++h) {
    transpose(Kt_.get() + static_cast<size_t>(h) * D * ld_, [&](int j) { return k_at(b, j, h); });
    if (!d_.local(h)) continue;
    const int hl = h - d_.H0;
    transpose(Vt_.get() + static_cast<size_t>(hl) * D * ld_, [&](int j) { return v_at(b, j, hl); });
  }
}

// q_t·k_j for the R query rows from t0, every head, j < np, into the S rows of each tile row's X.
template <class T>
void ReferenceAttention<T>::tile_scores(int b, int t0, int R, int np, Rows& r) {
  for (int h = 0; h < d_.H; ++h)
    simd::panel_gemm(R, d_.D, q_at(b, t0, h), d_.q_row, 1, Kt(h), ld_, r.x.data() + h * ld_,
                     x_stride(), np, nullptr, false);
}

// Query row t, given q_t·k_j in the S rows of x: S = q_t·k_j/sqrt(D) (zero past j = O + t) and B
// complete f's input x = [S; B] for every head; A = S + B (+ f(x)) of the local heads goes to a,
// f's hidden layer (pre-activation and activation) to r.z, r.act.
template <class T>
void ReferenceAttention<T>::logits_row(int t, int np, T* x, T* a, Rows& r) {
  const int H = d_.H, n = keys_of_row(t);
  const int64_t ld = ld_;
  for (int h = 0; h < H; ++h) {
    T* __restrict s = x + h * ld;
    std::fill(s + n, s + np, T(0));  // masked keys: nothing of them reaches f
#pragma omp simd
    for (int j = 0; j < n; ++j) s[j] *= scale_;
    T* __restrict bias = x + (H + h) * ld;
    const T* src = table_.row(h, t);
    std::copy(src, src + n, bias);
    std::fill(bias + n, bias + np, T(0));
  }
  for (int hl = 0; hl < d_.Hl; ++hl) {
    const T* __restrict s = x + (d_.H0 + hl) * ld;
    const T* __restrict bias = x + (H + d_.H0 + hl) * ld;
    T* __restrict ah = a + hl * ld;
#pragma omp simd
    for (int j = 0; j < np; ++j) ah[j] = s[j] + bias[j];
  }
  if (d_.dape) {  // f's output rows of the local heads only
    const auto& f = in_.dape;
    simd::panel_gemm(d_.W, 2 * H, f.w1.ptr<T>(), 2 * H, 1, x, ld, r.z.data(), ld, np, f.b1.ptr<T>(),
                     false);
    simd::panel_activate(r.z.data(), r.act.data(), d_.W, ld, np,
                         am::activation_negative_slope<T>(true));
    simd::panel_gemm(d_.Hl, d_.W, f.w2.ptr<T>() + int64_t{d_.H0} * d_.W, d_.W, 1, r.act.data(), ld,
                     a, ld, np, f.b2.ptr<T>() + d_.H0, /*accumulate=*/true);
  }
}

// The R query rows from t0: logits, softmax (P zero past each row's last key), lse, out = P·V.
template <class T>
void ReferenceAttention<T>::forward_tile(int b, int t0, int R, Rows& r, T* out, T* lse) {
  const int Hl = d_.Hl, n_last = keys_of_row(t0 + R - 1), np = simd::padded<T>(n_last);
  tile_scores(b, t0, R, np, r);
  for (int tr = 0; tr < R; ++tr) {
    const int t = t0 + tr, n = keys_of_row(t);
    T* a = r.a.data() + tr * a_stride();
    logits_row(t, np, r.x.data() + tr * x_stride(), a, r);
    for (int hl = 0; hl < Hl; ++hl) {
      T* __restrict p = a + hl * ld_;
      const T m = simd::row_max(p, n);
      simd::exp_shifted(p, n, m);
      const T total = sum(p, n);
      const T inv = T(1) / total;
#pragma omp simd
      for (int j = 0; j < n; ++j) p[j] *= inv;
      std::fill(p + n, p + np, T(0));
      lse[lse_index(b, t, hl)] = m + std::log(total);
    }
  }
  for (int hl = 0; hl < Hl; ++hl)  // out = P·V
    simd::weighted_row_sums(R, n_last, r.a.data() + hl * ld_, a_stride(), v_at(b, 0, hl), d_.v_row,
                            d_.D, T(1), out + out_index(b, t0, hl), int64_t{Hl} * d_.D);
}

template <class T>
void ReferenceAttention<T>::forward(T* out, T* lse) {
  const int N = d_.N, tiles = (N + kQueryTile - 1) / kQueryTile;
#pragma omp parallel
  {
    Rows r(d_, ld_, layout_.total);
    for (int b = 0; b < d_.B; ++b) {
      transpose_kv(b);  // ends with a barrier
#pragma omp for schedule(dynamic, 1)
      for (int item = 0; item < tiles; ++item) {
        const int t0 = (tiles - 1 - item) * kQueryTile;  // longest rows first
        forward_tile(b, t0, std::min(kQueryTile, N - t0), r, out, lse);
      }
    }  // the loop's barrier: Kt and Vt are free for the next batch element
  }
}

// The learned position parameters' gradients from query row t's dB[h][j] (every head; zero past
// the last key), into the lane accumulators.
template <class T>
void ReferenceAttention<T>::scheme_backward_row(int t, int np, const T* dB, Rows& r) {
  const int H = d_.H;
  const int64_t ld = ld_;
  const ParamLayout& L = layout_;
  simd::Vec<T>* acc = r.grad.data();
  if (d_.scheme == PositionScheme::kerple) {
    for (int h = 0; h < H; ++h) {
      simd::panel_outer(1, 1, dB + h * ld, ld, table_.kerple_dp_row(h, t), ld, np,
                        acc + L.kerple_p + h);
      simd::panel_outer(1, 1, dB + h * ld, ld, table_.kerple_da_row(h, t), ld, np,
                        acc + L.kerple_a + h);
    }
  } else if (d_.scheme == PositionScheme::fire) {
    // g's forward again, then its backward: dB is g's output gradient, u its input.
    const auto& f = in_.bias;
    const int G = d_.G;
    r.fire.compute(d_.O + t, f, np);
    const T* u = r.fire.u.data();
    simd::panel_gemm(G, 1, f.fire_w1.ptr<T>(), 1, 1, u, ld, r.z.data(), ld, np, f.fire_b1.ptr<T>(),
                     false);
    simd::panel_activate(r.z.data(), r.act.data(), G, ld, np,
                         am::activation_negative_slope<T>(d_.g_leaky));
    simd::panel_outer(H, G, dB, ld, r.act.data(), ld, np, acc + L.fire_w2);
    simd::panel_row_sums(H, dB, ld, np, acc + L.fire_b2);
    simd::panel_gemm(G, H, f.fire_w2.ptr<T>(), 1, G, dB, ld, r.dz.data(), ld, np, nullptr, false);
    simd::panel_activate_backward(r.dz.data(), r.z.data(), G, ld, np,
                                  am::activation_negative_slope<T>(d_.g_leaky));
    simd::panel_outer(G, 1, r.dz.data(), ld, u, ld, np, acc + L.fire_w1);
    simd::panel_row_sums(G, r.dz.data(), ld, np, acc + L.fire_b1);
    simd::panel_gemm(1, G, f.fire_w1.ptr<T>(), 0, 1, r.dz.data(), ld, r.du.data(), ld, np, nullptr,
                     false);  // du = w1ᵀ·dz
    simd::panel_outer(1, 1, r.du.data(), ld, r.fire.du_dc.data(), ld, np, acc + L.fire_c);
    simd::panel_outer(1, 1, r.du.data(), ld, r.fire.du_dmult.data(), ld, np, acc + L.fire_mult);
  }
}

// Query row t (tile row `tile_row`) of backward, given q_t·k_j and dP = dout_t·v_j in the tile
// panels: recompute the logits and P of the local heads (from the saved lse), then
// dA = P ⊙ (dP − dout_t·out_t); f's backward (dA is its output gradient on the local heads);
// dS = dA + ∂f/∂S and dB = dA + ∂f/∂B for every head (dA counts on the local heads only), into
// the tile row's [dS; dB] panel; the position parameters' gradients. Stores P and dS for the
// pass over key columns.
template <class T>
void ReferenceAttention<T>::backward_row(int b, int t, int np, int tile_row, const T* out,
                                         const T* lse, const T* dout, Rows& r) {
  const int H = d_.H, Hl = d_.Hl, H0 = d_.H0, D = d_.D, n = keys_of_row(t);
  const int64_t ld = ld_;
  T* x = r.x.data() + tile_row * x_stride();
  T* a = r.a.data() + tile_row * a_stride();
  T* dA = r.da.data() + tile_row * a_stride();
  logits_row(t, np, x, a, r);
  for (int hl = 0; hl < Hl; ++hl) {
    T* __restrict p = a + hl * ld;
    simd::exp_shifted(p, n, lse[lse_index(b, t, hl)]);
    std::fill(p + n, p + np, T(0));
    std::copy(p, p + n, P_row(hl, t));
    const T* g = dout + out_index(b, t, hl);
    const T delta = dot(g, out + out_index(b, t, hl), D);
    const T* __restrict dp = r.dp.data() + tile_row * a_stride() + hl * ld;
    T* __restrict da = dA + hl * ld;
#pragma omp simd
    for (int j = 0; j < np; ++j) da[j] = p[j] * (dp[j] - delta);
  }
  T* dX = r.dx.data() + tile_row * x_stride();  // [dS; dB], 2H rows
  if (d_.dape) {
    const auto& f = in_.dape;
    const ParamLayout& L = layout_;
    const int W = d_.W;
    simd::Vec<T>* acc = r.grad.data();
    // f's second layer: only the local heads' output rows have a gradient.
    simd::panel_outer(Hl, W, dA, ld, r.act.data(), ld, np, acc + L.dape_w2 + int64_t{H0} * W);
    simd::panel_row_sums(Hl, dA, ld, np, acc + L.dape_b2 + H0);
    simd::panel_gemm(W, Hl, f.w2.ptr<T>() + int64_t{H0} * W, 1, W, dA, ld, r.dz.data(), ld, np,
                     nullptr, false);  // d act = W2[local]ᵀ·dA
    simd::panel_activate_backward(r.dz.data(), r.z.data(), W, ld, np,
                                  am::activation_negative_slope<T>(true));
    simd::panel_outer(W, 2 * H, r.dz.data(), ld, x, ld, np, acc + L.dape_w1);
    simd::panel_row_sums(W, r.dz.data(), ld, np, acc + L.dape_b1);
    simd::panel_gemm(2 * H, W, f.w1.ptr<T>(), 1, 2 * H, r.dz.data(), ld, dX, ld, np, nullptr,
                     false);           // ∂f/∂X = W1ᵀ·dZ
    for (int hl = 0; hl < Hl; ++hl) {  // A = S + B + f: dA also reaches S and B of its head
      const T* __restrict da = dA + hl * ld;
      T* __restrict ds = dX + (H0 + hl) * ld;
      T* __restrict db = dX + (H + H0 + hl) * ld;
#pragma omp simd
      for (int j = 0; j < np; ++j) {
        ds[j] += da[j];
        db[j] += da[j];
      }
    }
  } else {  // A = S + B: dS = dB = dA on the local heads, zero on the others
    for (int h = 0; h < H; ++h) {
      T* ds = dX + h * ld;
      T* db = dX + (H + h) * ld;
      if (d_.local(h)) {
        const T* da = dA + (h - H0) * ld;
        std::copy(da, da + np, ds);
        std::copy(da, da + np, db);
      } else {
        std::fill(ds, ds + np, T(0));
        std::fill(db, db + np, T(0));
      }
    }
  }
  if (d_.scheme == PositionScheme::kerple || d_.scheme == PositionScheme::fire)
    scheme_backward_row(t, np, dX + H * ld, r);
  for (int h = 0; h < H; ++h) std::copy(dX + h * ld, dX + h * ld + n, dS_row(h, t));
}

// The R query rows from t0: q·kᵀ and dP = dout·vᵀ for the tile, every row's backward, then
// dq = dS·K/sqrt(D) for every head.
template <class T>
void ReferenceAttention<T>::backward_tile(int b, int t0, int R, const T* out, const T* lse,
                                          const T* dout, T* dq, Rows& r) {
  const int H = d_.H, Hl = d_.Hl, D = d_.D, n_last = keys_of_row(t0 + R - 1);
  const int np = simd::padded<T>(n_last);
  tile_scores(b, t0, R, np, r);
  for (int hl = 0; hl < Hl; ++hl)
    simd::panel_gemm(R, D, dout + out_index(b, t0, hl), int64_t{Hl} * D, 1, Vt(hl), ld_,
                     r.dp.data() + hl * ld_, a_stride(), np, nullptr, false);
  for (int tr = 0; tr < R; ++tr) backward_row(b, t0 + tr, np, tr, out, lse, dout, r);
  for (int h = 0; h < H; ++h)  // the dS rows of tile row 0, then of the next rows at x_stride
    simd::weighted_row_sums(R, n_last, r.dx.data() + h * ld_, x_stride(), k_at(b, 0, h), d_.k_row,
                            D, scale_, dq + q_offset(b, t0, h), d_.q_row);
}

// Adds the lane accumulators to a row block's partial (lanes summed in order) and clears them.
template <class T>
void ReferenceAttention<T>::flush_gradients(Rows& r, double* partial) {
  for (int64_t k = 0; k < layout_.total; ++k) {
    partial[k] += static_cast<double>(simd::lane_sum<T>(r.grad[k]));
    r.grad[k] = simd::Vec<T>{};
  }
}

// dk_j = Σ_t dS[h, t, j]·q_t / sqrt(D) and (WITH_V, h local) dv_j = Σ_t P[h, t, j]·dout_t for
// COLS key columns from jc, one SIMD vector of the head dimension at a time, each summed over the
// query rows t in order. dsT and pT hold the columns of the block transposed
// ([column][t − first_row]); P and dS are zero above the diagonal, so every row from the first
// one that sees key jc can be included.
template <class T>
template <int COLS, bool WITH_V>
void ReferenceAttention<T>::dkdv_columns(int b, int h, int first_row, int jc, const T* dsT,
                                         const T* pT, const T* dout, T* dk, T* dv) {
  constexpr int L = simd::kLanes<T>;
  const int N = d_.N, D = d_.D, rows = N - first_row, hl = h - d_.H0;
  const int t_start = std::max(0, jc - d_.O);  // the first query row that sees key jc
  const T* ds[COLS];
  const T* p[COLS];
  for (int c = 0; c < COLS; ++c) {
    ds[c] = dsT + static_cast<size_t>(c) * rows;  // indexed by t − first_row
    p[c] = pT + static_cast<size_t>(c) * rows;
  }
  auto dk_at = [&](int c) { return dk + k_offset(b, jc + c, h); };
  auto dv_at = [&](int c) { return dv + v_offset(b, jc + c, hl); };
  int e = 0;
  for (; e + L <= D; e += L) {
    simd::Vec<T> ak[COLS] = {}, av[COLS] = {};
    for (int t = t_start; t < N; ++t) {
      const simd::Vec<T> qv = simd::load(q_at(b, t, h) + e);
      for (int c = 0; c < COLS; ++c) ak[c] += ds[c][t - first_row] * qv;
      if constexpr (WITH_V) {
        const simd::Vec<T> gv = simd::load(dout + out_index(b, t, hl) + e);
        for (int c = 0; c < COLS; ++c) av[c] += p[c][t - first_row] * gv;
      }
    }
    for (int c = 0; c < COLS; ++c) {
      simd::store(dk_at(c) + e, ak[c] * scale_);
      if constexpr (WITH_V) simd::store(dv_at(c) + e, av[c]);
    }
  }
  for (; e < D; ++e) {
    T ak[COLS] = {}, av[COLS] = {};
    for (int t = t_start; t < N; ++t) {
      const T qe = q_at(b, t, h)[e];
      for (int c = 0; c < COLS; ++c) ak[c] += ds[c][t - first_row] * qe;
      if constexpr (WITH_V) {
        const T ge = dout[out_index(b, t, hl) + e];
        for (int c = 0; c < COLS; ++c) av[c] += p[c][t - first_row] * ge;
      }
    }
    for (int c = 0; c < COLS; ++c) {
      dk_at(c)[e] = ak[c] * scale_;
      if constexpr (WITH_V) dv_at(c)[e] = av[c];
    }
  }
}

// dk (and, for a local head, dv) of the key columns [j0, j0 + kColumnBlock) of head h. The
// block's columns of dS (and P) are first copied out transposed (each row of them read once), so
// the sums over t stream contiguous memory. Only the query rows from the first that sees key j0
// contribute.
template <class T>
void ReferenceAttention<T>::dkdv_block(int b, int h, int j0, const T* dout, T* dk, T* dv,
                                       std::vector<T>& columns) {
  const int N = d_.N, j1 = std::min(d_.M, j0 + kColumnBlock), width = j1 - j0;
  const int first_row = std::max(0, j0 - d_.O), rows = N - first_row;
  const bool local = d_.local(h);
  T* dsT = columns.data();
  T* pT = columns.data() + static_cast<size_t>(kColumnBlock) * N;
  for (int t = first_row; t < N; ++t) {
    const T* ds = dS_row(h, t) + j0;
    for (int c = 0; c < width; ++c) dsT[static_cast<size_t>(c) * rows + (t - first_row)] = ds[c];
    if (!local) continue;
    const T* p = P_row(h - d_.H0, t) + j0;
    for (int c = 0; c < width; ++c) pT[static_cast<size_t>(c) * rows + (t - first_row)] = p[c];
  }
  if (local)
    dkdv_range<true>(b, h, j0, j1, first_row, dsT, pT, dout, dk, dv);
  else
    dkdv_range<false>(b, h, j0, j1, first_row, dsT, pT, dout, dk, dv);
}

// Columns [j0, j1) four at a time, then one at a time; dsT and pT start at column j0.
template <class T>
template <bool WITH_V>
void ReferenceAttention<T>::dkdv_range(int b, int h, int j0, int j1, int first_row, const T* dsT,
                                       const T* pT, const T* dout, T* dk, T* dv) {
  const size_t rows = static_cast<size_t>(d_.N - first_row);
  int jc = j0;
  for (; jc + 4 <= j1; jc += 4)
    dkdv_columns<4, WITH_V>(b, h, first_row, jc, dsT + (jc - j0) * rows, pT + (jc - j0) * rows,
                            dout, dk, dv);
  for (; jc < j1; ++jc)
    dkdv_columns<1, WITH_V>(b, h, first_row, jc, dsT + (jc - j0) * rows, pT + (jc - j0) * rows,
                            dout, dk, dv);
}

template <class T>
void ReferenceAttention<T>::backward(const T* out, const T* lse, const T* dout,
                                     const AttentionGrads& grads) {
  const int N = d_.N, M = d_.M, H = d_.H;
  P_.assign(static_cast<size_t>(d_.Hl) * N * M, T(0));
  dS_.assign(static_cast<size_t>(H) * N * M, T(0));
  T* dq = grads.dq.ptr<T>();
  T* dk = grads.dk.ptr<T>();
  T* dv = grads.dv.ptr<T>();
  const ParamLayout& L = layout_;
  const int blocks = (N + kRowBlock - 1) / kRowBlock;
  const int column_blocks = (M + kColumnBlock - 1) / kColumnBlock;
  std::vector<double> partials(static_cast<size_t>(blocks) * L.total, 0.0);
#pragma omp parallel
  {
    Rows r(d_, ld_, L.total);
    std::vector<T> columns(static_cast<size_t>(2) * kColumnBlock * N);  // dkdv_block's transpose
    for (int b = 0; b < d_.B; ++b) {
      transpose_kv(b);  // ends with a barrier
#pragma omp for schedule(dynamic, 1)
      for (int item = 0; item < blocks; ++item) {
        const int block = blocks - 1 - item;  // longest rows first
        const int t_end = std::min(N, (block + 1) * kRowBlock);
        for (int t0 = block * kRowBlock; t0 < t_end; t0 += kQueryTile)
          backward_tile(b, t0, std::min(kQueryTile, t_end - t0), out, lse, dout, dq, r);
        flush_gradients(r, partials.data() + static_cast<size_t>(block) * L.total);
      }  // barrier: P and dS are complete for this batch element
#pragma omp for schedule(dynamic, 1)
      for (int item = 0; item < H * column_blocks; ++item)
        dkdv_block(b, item / column_blocks, (item % column_blocks) * kColumnBlock, dout, dk, dv,
                   columns);
      // barrier before the next batch element overwrites Kt, Vt, P and dS
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
  check_attention_grads(in, grads, dtype_of<T>());
  DAPE_CHECK(out != nullptr && lse != nullptr && dout != nullptr,
             "attention backward: out, lse and dout must be defined");
  Dims with_gradients = d;
  with_gradients.backward = true;
  ReferenceAttention<T>(in, with_gradients).backward(out, lse, dout, grads);
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
