#include "kernels/cpu/attention_fused.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "common/check.h"
#include "kernels/attention_math.h"
#include "kernels/cpu/simd_rows.h"

namespace dape::cpu {
namespace {

namespace am = dape::attention_math;
using simd::kLanes;
using simd::Vec;

constexpr int kBq = 32;            // query rows per tile
constexpr int kBk = 64;            // keys per tile (a multiple of every SIMD width)
constexpr int kPairs = kBq * kBk;  // pairs per tile: the length of every panel row
// Elements between panel rows: kPairs plus two cache lines, so that the rows of a panel (8 KB
// apart otherwise) do not all map to the same L1 set.
constexpr int kLd = kPairs + 32;
constexpr int kChunk = 2 * kBk;       // pairs per chunk of f's layers (its panels stay in L1)
constexpr int kOuterChunk = 8 * kBk;  // pairs per stretch of f's weight-gradient sums
static_assert(kBk % 16 == 0 && kChunk % kBk == 0 && kPairs / kChunk <= kBq &&
              kPairs / kOuterChunk <= kBq);

// ---- one call: sizes, pointers, position tables ------------------------------------------------

template <class T>
struct Call {
  int B = 0, Nq = 0, Nk = 0, H = 0, D = 0, Hl = 0, h0 = 0, qo = 0, W = 0, G = 0;
  int64_t qs = 0, ks = 0, vs = 0, kbs = 0, vbs = 0;
  int nkb = 0;  // key blocks per sequence
  PositionScheme scheme = PositionScheme::none;
  bool dape = false, g_leaky = false, has_bias = false;
  T scale = 0;
  const T *q = nullptr, *k = nullptr, *v = nullptr;
  const T *w1 = nullptr, *b1 = nullptr, *w2 = nullptr, *b2 = nullptr;      // f
  const T *gw1 = nullptr, *gb1 = nullptr, *gw2 = nullptr, *gb2 = nullptr;  // FIRE's g
  // Distance tables, reversed: entry e holds distance Nk − 1 − e (zero for e ≥ Nk, i.e. for
  // pairs above the diagonal), so the entries of one tile row are contiguous and increasing.
  int64_t ld = 0;                      // 2·Nk + Bk entries per head, rounded up to SIMD vectors
  std::vector<T> bias_rev;             // ALiBi / Kerple B, [H][ld]
  std::vector<T> dp_rev, da_rev;       // Kerple ∂B/∂p, ∂B/∂a, [H][ld]
  std::vector<T> psi_rev, psi_dc_rev;  // FIRE ψ(r), ∂ψ(r)/∂c, [ld]
  // FIRE, per query position: u = ψ(r)·inv_den; ∂u/∂c = ψ_c(r)·inv_den − ψ(r)·fb; ∂u/∂L_mult =
  // ψ(r)·fk.
  std::vector<T> inv_den, fb, fk;
  // DAPE over a bias that depends on i − j alone (none, RoPE, ALiBi, Kerple): f's first layer
  // splits as W1·[S; B] + b1 = W1_S·S + Z(i − j) with Z(r) = W1_B·B(r) + b1, tabulated once
  // per distance ([W][ld], reversed like the bias). Half of that layer's multiply-adds leave the
  // tile, and so do the B half of its input gradient and weight gradient (summed per distance in
  // backward). FIRE's B also depends on i, so FIRE keeps B in the tile.
  bool f_by_distance = false;
  std::vector<T> z_rev;
  // K (and V for backward) packed per key block and head, transposed: [B][nkb][H][D][Bk].
  // Left uninitialized by their allocation: the packing writes every element, padding included.
  std::unique_ptr<T[]> kt, vt;

  // Offset of the first table entry of tile row at query position qi for the block from j0.
  int64_t table_base(int qi, int j0) const { return int64_t{Nk} - 1 - qi + j0; }
  const T* kt_block(int b, int kb) const {
    return kt.get() + (int64_t{b} * nkb + kb) * H * D * kBk;
  }
  const T* vt_block(int b, int kb) const {
    return vt.get() + (int64_t{b} * nkb + kb) * Hl * D * kBk;
  }
};

void check_tensor(const Tensor& t, DType dt, int64_t min_numel, const char* what) {
  DAPE_CHECK(t.defined(), "fused attention: {} is undefined", what);
  DAPE_CHECK(t.dtype == dt, "fused attention: {} holds {}, the computation runs in {}", what,
             dtype_name(t.dtype), dtype_name(dt));
  DAPE_CHECK(t.numel() >= min_numel,
             "fused attention: {} has {} elements ({}), expected at least {}", what, t.numel(),
             t.shape.str(), min_numel);
}

// Packs `cols` rows (stride apart) of heads × D values into a [heads·D][Bk] block, transposed,
// zero past `cols`. One head at a time, so that the Bk-float lines being filled stay in L1.
template <class T>
void pack_transposed(const T* rows, int64_t stride, int cols, int heads, int D, T* dst) {
  for (int h = 0; h < heads; ++h) {
    T* blk = dst + int64_t{h} * D * kBk;
    for (int jl = 0; jl < cols; ++jl) {
      const T* row = rows + jl * stride + h * D;
      for (int d = 0; d < D; ++d) blk[int64_t{d} * kBk + jl] = row[d];
    }
    for (int d = 0; d < D; ++d) std::fill(blk + int64_t{d} * kBk + cols, blk + (d + 1) * kBk, T(0));
  }
}

template <class T>
Call<T> make_call(const AttentionInputs& in) {
  const AttentionShape& s = in.shape;
  const DType dt = dtype_of<T>();
  Call<T> c;
  c.B = s.batch;
  c.Nq = s.seq_len;
  c.Nk = s.keys();
  c.H = s.heads;
  c.D = s.head_dim;
  c.Hl = s.local();
  c.h0 = s.head_begin;
  c.qo = s.query_offset();
  DAPE_CHECK(c.B >= 1 && c.Nq >= 1 && c.H >= 1 && c.D >= 1,
             "fused attention: sizes must be positive, got B={} N={} H={} D={}", c.B, c.Nq, c.H,
             c.D);
  DAPE_CHECK(c.Nk >= c.Nq, "fused attention: kv_len {} is shorter than seq_len {}", c.Nk, c.Nq);
  DAPE_CHECK(c.h0 >= 0 && c.Hl >= 1 && c.h0 + c.Hl <= c.H,
             "fused attention: head range [{}, {}) is not inside [0, {})", c.h0, c.h0 + c.Hl, c.H);
  c.qs = s.q_stride();
  c.ks = s.k_stride();
  c.vs = s.v_stride();
  c.kbs = s.k_batch();
  c.vbs = s.v_batch();
  const int64_t HD = int64_t{c.H} * c.D, HlD = int64_t{c.Hl} * c.D;
  DAPE_CHECK(
      c.qs >= HD && c.ks >= HD && c.vs >= HlD,
      "fused attention: row strides q {} k {} v {} are shorter than a row (H·D = {}, Hl·D = {})",
      c.qs, c.ks, c.vs, HD, HlD);
  // q, k and v are strided views: their shapes give the logical size, not the memory extent.
  check_tensor(in.q, dt, int64_t{c.B} * c.Nq * HD, "q");
  check_tensor(in.k, dt, int64_t{c.B} * c.Nk * HD, "k");
  check_tensor(in.v, dt, int64_t{c.B} * c.Nk * HlD, "v");
  c.q = in.q.ptr<T>();
  c.k = in.k.ptr<T>();
  c.v = in.v.ptr<T>();
  c.nkb = (c.Nk + kBk - 1) / kBk;
  c.scheme = in.bias.scheme;
  c.scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(c.D)));
  c.dape = in.dape.enabled;
  if (c.dape) {
    c.W = in.dape.width;
    DAPE_CHECK(c.W >= 1, "fused attention: DAPE width {} must be positive", c.W);
    check_tensor(in.dape.w1, dt, int64_t{c.W} * 2 * c.H, "dape w1");
    check_tensor(in.dape.b1, dt, c.W, "dape b1");
    check_tensor(in.dape.w2, dt, int64_t{c.H} * c.W, "dape w2");
    check_tensor(in.dape.b2, dt, c.H, "dape b2");
    DAPE_CHECK(
        in.dape.w1.numel() == int64_t{c.W} * 2 * c.H && in.dape.w2.numel() == int64_t{c.H} * c.W,
        "fused attention: DAPE weights {} and {} do not match W={} H={}", in.dape.w1.shape.str(),
        in.dape.w2.shape.str(), c.W, c.H);
    c.w1 = in.dape.w1.ptr<T>();
    c.b1 = in.dape.b1.ptr<T>();
    c.w2 = in.dape.w2.ptr<T>();
    c.b2 = in.dape.b2.ptr<T>();
  }

  const int Nk = c.Nk, H = c.H;
  c.ld = simd::padded<T>(2 * Nk + kBk);
  auto fill_rev = [&](std::vector<T>& tab, int heads, auto value) {
    tab.assign(static_cast<size_t>(heads) * c.ld, T(0));
#pragma omp parallel for collapse(2) schedule(static)
    for (int h = 0; h < heads; ++h)
      for (int r = 0; r < Nk; ++r) tab[h * c.ld + (Nk - 1 - r)] = value(h, static_cast<T>(r));
  };
  if (c.scheme == PositionScheme::alibi) {
    c.has_bias = true;
    fill_rev(c.bias_rev, H,
             [&](int h, T r) { return am::alibi_bias(am::alibi_slope<T>(h, H), r); });
  } else if (c.scheme == PositionScheme::kerple) {
    c.has_bias = true;
    check_tensor(in.bias.kerple_p, dt, H, "kerple_p");
    check_tensor(in.bias.kerple_a, dt, H, "kerple_a");
    const T* p = in.bias.kerple_p.ptr<T>();
    const T* a = in.bias.kerple_a.ptr<T>();
    auto P = [&](int h) { return am::kerple_clamp(p[h]); };
    auto A = [&](int h) { return am::kerple_clamp(a[h]); };
    fill_rev(c.bias_rev, H, [&](int h, T r) { return am::kerple_bias(P(h), A(h), r); });
    fill_rev(c.dp_rev, H, [&](int h, T r) { return am::kerple_bias_dp(A(h), r); });
    fill_rev(c.da_rev, H, [&](int h, T r) { return am::kerple_bias_da(P(h), A(h), r); });
  } else if (c.scheme == PositionScheme::fire) {
    c.has_bias = true;
    const auto& f = in.bias;
    c.G = static_cast<int>(f.fire_b1.numel());
    DAPE_CHECK(c.G >= 1, "fused attention: FIRE's g has width {}", c.G);
    check_tensor(f.fire_c, dt, 1, "fire_c");
    check_tensor(f.fire_L_multiplier, dt, 1, "fire_L_multiplier");
    check_tensor(f.fire_w1, dt, c.G, "fire_w1");
    check_tensor(f.fire_w2, dt, int64_t{H} * c.G, "fire_w2");
    check_tensor(f.fire_b2, dt, H, "fire_b2");
    c.gw1 = f.fire_w1.ptr<T>();
    c.gb1 = f.fire_b1.ptr<T>();
    c.gw2 = f.fire_w2.ptr<T>();
    c.gb2 = f.fire_b2.ptr<T>();
    c.g_leaky = f.fire_leaky_relu;
    const T cc = f.fire_c.ptr<T>()[0], mult = f.fire_L_multiplier.ptr<T>()[0];
    const T L = static_cast<T>(f.fire_L), eps = static_cast<T>(am::kFireEps);
    fill_rev(c.psi_rev, 1, [&](int, T r) { return am::fire_psi(cc, r); });
    fill_rev(c.psi_dc_rev, 1, [&](int, T r) { return am::fire_psi_dc(cc, r); });
    c.inv_den.resize(Nk);
    c.fb.resize(Nk);
    c.fk.resize(Nk);
    const T thr = am::fire_threshold(mult, L);
    for (int i = 0; i < Nk; ++i) {
      const T pos = static_cast<T>(i);
      const T m = am::fire_normalizer_position(pos, thr);
      const T inv = T(1) / (am::fire_psi(cc, m) + eps);
      c.inv_den[i] = inv;
      c.fb[i] = inv * inv * am::fire_psi_dc(cc, m);
      c.fk[i] = -inv * inv * am::fire_psi_dx(cc, m) * am::fire_normalizer_position_dthr(pos, thr) *
                am::fire_threshold_dmult(mult, L);
    }
  }

  c.f_by_distance = c.dape && c.scheme != PositionScheme::fire;
  if (c.f_by_distance) {
    c.z_rev.resize(static_cast<size_t>(c.W) * c.ld);
    if (c.has_bias)
      simd::panel_gemm(c.W, H, c.w1 + H, 2 * H, 1, c.bias_rev.data(), c.ld, c.z_rev.data(), c.ld,
                       static_cast<int>(c.ld), c.b1, false);
    else
      for (int w = 0; w < c.W; ++w)
        std::fill(c.z_rev.begin() + w * c.ld, c.z_rev.begin() + (w + 1) * c.ld, c.b1[w]);
  }

  // Pack K per key block and head, transposed, zero-padded past the last key.
  c.kt.reset(new T[static_cast<size_t>(c.B) * c.nkb * H * c.D * kBk]);
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < c.B; ++b)
    for (int kb = 0; kb < c.nkb; ++kb) {
      const int j0 = kb * kBk;
      pack_transposed(c.k + b * c.kbs + int64_t{j0} * c.ks, c.ks, std::min(kBk, Nk - j0), H, c.D,
                      c.kt.get() + (int64_t{b} * c.nkb + kb) * H * c.D * kBk);
    }
  return c;
}

template <class T>
void pack_for_backward(Call<T>& c) {
  c.vt.reset(new T[static_cast<size_t>(c.B) * c.nkb * c.Hl * c.D * kBk]);
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < c.B; ++b)
    for (int kb = 0; kb < c.nkb; ++kb) {
      const int j0 = kb * kBk;
      pack_transposed(c.v + b * c.vbs + int64_t{j0} * c.vs, c.vs, std::min(kBk, c.Nk - j0), c.Hl,
                      c.D, c.vt.get() + (int64_t{b} * c.nkb + kb) * c.Hl * c.D * kBk);
    }
}

// ---- per-thread tiles --------------------------------------------------------------------------

template <class T>
struct Tile {
  std::vector<T> qsc;   // [H][Bq][D] the task's query rows times 1/√D, head-major
  std::vector<T> x;     // [H][P] S; for FIRE [2H][P], S then B (f's and g's input)
  std::vector<T> act;   // [W][P] f's hidden activations
  std::vector<T> a;     // [Hl][P] logits, then probabilities
  std::vector<T> u;     // [P] FIRE's normalized distance
  std::vector<T> gact;  // [G][P] g's hidden activations
  std::vector<T> o;     // [Hl][Bq][D] output accumulators
  std::vector<T> m, l;  // [Hl][Bq] running max and sum
  // backward
  std::vector<T> dp;              // [Hl][P] dP, then dA
  std::vector<T> da;              // [W][P] ∂/∂act, then ∂/∂hidden (also g's)
  std::vector<T> dx;              // [H][P] ∂/∂S; for FIRE [2H][P], ∂/∂S then ∂/∂B
  std::vector<T> dq;              // [H][Bq][D]
  std::vector<T> dout;            // [Hl][Bq][D] the task's output gradient rows, head-major
  std::vector<T> di;              // [Hl][Bq] rowsum(dO ⊙ O)
  std::vector<T> du, dudc, dudm;  // FIRE [P]
  // f by distance: per-distance sums over the task's pairs of ∂/∂hidden ([W][ld]), then (Kerple)
  // of dA for the local heads and of ∂f/∂B for all heads ([H][ld]); zero between tasks.
  std::vector<T> dist;

  explicit Tile(const Call<T>& c, bool backward) {
    const size_t P = kLd, HD = static_cast<size_t>(c.H) * c.D;
    qsc.resize(kBq * HD);
    // B is held per pair only for FIRE; the other schemes read theirs from the distance tables.
    const size_t x_rows = c.scheme == PositionScheme::fire ? 2 * c.H : c.H;
    x.resize(x_rows * P);
    act.resize(static_cast<size_t>(std::max(c.W, 1)) * P);
    a.resize(c.Hl * P);
    if (c.scheme == PositionScheme::fire) {
      u.resize(P);
      gact.resize(c.G * P);
    }
    o.resize(static_cast<size_t>(c.Hl) * kBq * c.D);
    m.resize(c.Hl * kBq);
    l.resize(c.Hl * kBq);
    if (backward) {
      dp.resize(c.Hl * P);
      da.resize(static_cast<size_t>(std::max({c.W, c.G, 1})) * P);
      dx.resize(x_rows * P);
      dq.resize(kBq * HD);
      dout.resize(static_cast<size_t>(kBq) * c.Hl * c.D);
      di.resize(c.Hl * kBq);
      if (c.scheme == PositionScheme::fire) {
        du.resize(P);
        dudc.resize(P);
        dudm.resize(P);
      }
      if (c.f_by_distance)
        dist.assign(
            static_cast<size_t>(c.W + (c.scheme == PositionScheme::kerple ? c.H : 0)) * c.ld, T(0));
    }
  }
};

// Epilogues fused into the panel GEMMs (simd::panel_gemm): each turns a result vector of row m at
// column j into what is stored, saving a separate pass over the panel.
// LeakyReLU (f's hidden layer).
template <class T>
struct LeakyReluEpilogue {
  T slope;
  Vec<T> operator()(const Vec<T>& v, int, int64_t) const { return v > Vec<T>{} ? v : slope * v; }
};
// f's hidden layer when the B half comes from the distance table: adds Z at the pair's distance,
// then LeakyReLU. Column j of the call is pair c0 + j of the tile, in tile row (c0 + j) / Bk,
// whose table entries start at row_base[row].
template <class T>
struct DistanceLeakyReluEpilogue {
  const T* table;
  int64_t ld;
  const int64_t* row_base;
  int c0;
  T slope;
  Vec<T> operator()(const Vec<T>& v, int m, int64_t j) const {
    const int64_t p = c0 + j;
    const Vec<T> z = v + simd::load(table + m * ld + row_base[p / kBk] + p % kBk);
    return z > Vec<T>{} ? z : slope * z;
  }
};
// ∂/∂act → ∂/∂hidden: times the activation's derivative, read off the activation's sign.
template <class T>
struct ActivationGradEpilogue {
  const T* act;
  int64_t ld;
  T slope;
  Vec<T> operator()(const Vec<T>& v, int m, int64_t j) const {
    return simd::load(act + m * ld + j) > Vec<T>{} ? v : slope * v;
  }
};
// dP → dA = P ⊙ (dP − Di) for query row m (zero wherever P is).
template <class T>
struct SoftmaxGradEpilogue {
  const T* p;
  int64_t ld;
  const T* di;
  Vec<T> operator()(const Vec<T>& v, int m, int64_t j) const {
    return simd::load(p + m * ld + j) * (v - di[m]);
  }
};

// Number of keys of the block from j0 that query position qi sees.
inline int visible(int qi, int j0, int cols) {
  return std::clamp(qi - j0 + 1, 0, cols);
}

// Columns of a tile that any of its R rows sees, rounded up to whole SIMD vectors: the width the
// per-head products (S, P·V, dP, dq, dk, dv) run over. Below Bk only on the diagonal.
template <class T>
int tile_width(const Call<T>& c, int i0, int R, int j0, int cols) {
  constexpr int L = kLanes<T>;
  return (visible(c.qo + i0 + R - 1, j0, cols) + L - 1) / L * L;
}

// The stretches [begin, begin + size) of a tile's pairs that f must cover. Away from the
// diagonal every row sees every key: the whole tile, in stretches of `chunk`. On the diagonal
// (and in a ragged last key block) each row is cut to its visible keys rounded up to whole SIMD
// vectors, so f — the bulk of the work — is not spent on pairs the mask removes (at a training
// length of 128 that is a third of them).
struct PairSpans {
  bool full = false;
  int count = 0;
  int begin[kBq], size[kBq];
  int width[kBq];  // per tile row: the pairs covered from the row's start
};

template <class T>
PairSpans pair_spans(const Call<T>& c, int i0, int R, int j0, int cols, int chunk) {
  PairSpans s;
  const int np = R * kBk;
  s.full = cols == kBk && visible(c.qo + i0, j0, cols) == kBk;
  if (s.full) {
    std::fill(s.width, s.width + R, kBk);
    for (int c0 = 0; c0 < np; c0 += chunk) {
      s.begin[s.count] = c0;
      s.size[s.count++] = std::min(chunk, np - c0);
    }
    return s;
  }
  constexpr int L = kLanes<T>;
  for (int r = 0; r < R; ++r) {
    const int w = (visible(c.qo + i0 + r, j0, cols) + L - 1) / L * L;
    s.width[r] = w;
    if (w == 0) continue;
    s.begin[s.count] = r * kBk;
    s.size[s.count++] = w;
  }
  return s;
}

// Logits of the tile (rows i0 … i0+R−1 of sequence b, keys from block kb) for the local heads:
// t.x holds S and B for all heads, t.act f's activations, t.a the logits A (masked entries are
// whatever the arithmetic gave: callers read only the visible keys of each row).
template <class T>
void tile_logits(const Call<T>& c, Tile<T>& t, int b, int i0, int R, int kb) {
  const int H = c.H, D = c.D, Hl = c.Hl, h0 = c.h0, j0 = kb * kBk;
  const int np = R * kBk;
  const T* kt = c.kt_block(b, kb);
  T* x = t.x.data();
  // S = (Q/√D)·Kᵀ for every head: R rows × Bk keys, one panel row per query row.
  const int wt = tile_width(c, i0, R, j0, std::min(kBk, c.Nk - j0));
  for (int h = 0; h < H; ++h) {
    simd::panel_gemm(R, D, t.qsc.data() + int64_t{h} * kBq * D, D, 1, kt + int64_t{h} * D * kBk,
                     kBk, x + int64_t{h} * kLd, kBk, wt, nullptr, false);
  }
  // FIRE's B for every head, evaluated per pair into x's second half (f's input). ALiBi's and
  // Kerple's B are read from their tables where they are needed.
  T* bias = x + int64_t{H} * kLd;
  int64_t row_base[kBq];  // each row's first table entry for this block
  for (int r = 0; r < R; ++r) row_base[r] = c.table_base(c.qo + i0 + r, j0);
  if (c.scheme == PositionScheme::fire) {
    T* u = t.u.data();
    for (int r = 0; r < R; ++r) {
      const int qi = c.qo + i0 + r;
      const T* psi = c.psi_rev.data() + c.table_base(qi, j0);
      const T inv = c.inv_den[qi];
      for (int j = 0; j < kBk; ++j) u[r * kBk + j] = psi[j] * inv;
    }
    simd::panel_gemm(c.G, 1, c.gw1, 1, 1, u, kLd, t.gact.data(), kLd, np, c.gb1, false);
    simd::panel_activate(t.gact.data(), t.gact.data(), c.G, kLd, np,
                         am::activation_negative_slope<T>(c.g_leaky));
    simd::panel_gemm(H, c.G, c.gw2, c.G, 1, t.gact.data(), kLd, bias, kLd, np, c.gb2, false);
  }
  // A = S + B (+ f([S; B])) for the local heads.
  T* a = t.a.data();
  for (int hl = 0; hl < Hl; ++hl) {
    const T* s = x + int64_t{h0 + hl} * kLd;
    T* ar = a + int64_t{hl} * kLd;
    if (c.scheme == PositionScheme::fire) {
      const T* br = bias + int64_t{h0 + hl} * kLd;
#pragma omp simd
      for (int p = 0; p < np; ++p) ar[p] = s[p] + br[p];
    } else if (c.has_bias) {
      for (int r = 0; r < R; ++r) {
        const T* br = c.bias_rev.data() + (h0 + hl) * c.ld + row_base[r];
        const T* sr = s + r * kBk;
        T* arr = ar + r * kBk;
#pragma omp simd
        for (int j = 0; j < kBk; ++j) arr[j] = sr[j] + br[j];
      }
    } else {
      std::copy(s, s + np, ar);
    }
  }
  if (c.dape) {
    const int W = c.W;
    const T slope = am::activation_negative_slope<T>(true);
    const PairSpans spans = pair_spans(c, i0, R, j0, std::min(kBk, c.Nk - j0), kChunk);
    for (int k = 0; k < spans.count; ++k) {
      const int c0 = spans.begin[k], n = spans.size[k];
      if (c.f_by_distance)  // W1_S·S + Z(i − j)
        simd::panel_gemm(W, H, c.w1, 2 * H, 1, x + c0, kLd, t.act.data() + c0, kLd, n, nullptr,
                         false,
                         DistanceLeakyReluEpilogue<T>{c.z_rev.data(), c.ld, row_base, c0, slope});
      else
        simd::panel_gemm(W, 2 * H, c.w1, 2 * H, 1, x + c0, kLd, t.act.data() + c0, kLd, n, c.b1,
                         false, LeakyReluEpilogue<T>{slope});
      simd::panel_gemm(Hl, W, c.w2 + int64_t{h0} * W, W, 1, t.act.data() + c0, kLd, a + c0, kLd, n,
                       c.b2 + h0, true);
    }
  }
}

// ---- forward -----------------------------------------------------------------------------------

template <class T>
void load_queries(const Call<T>& c, Tile<T>& t, int b, int i0, int R) {
  const int D = c.D;
  for (int r = 0; r < R; ++r) {
    const T* src = c.q + (int64_t{b} * c.Nq + i0 + r) * c.qs;
    for (int h = 0; h < c.H; ++h) {
      T* dst = t.qsc.data() + (int64_t{h} * kBq + r) * D;
#pragma omp simd
      for (int d = 0; d < D; ++d) dst[d] = src[h * D + d] * c.scale;
    }
  }
}

template <class T>
void forward_task(const Call<T>& c, Tile<T>& t, int b, int i0, T* out, T* lse) {
  const int R = std::min(kBq, c.Nq - i0), D = c.D, Hl = c.Hl;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  load_queries(c, t, b, i0, R);
  std::fill(t.o.begin(), t.o.end(), T(0));
  std::fill(t.m.begin(), t.m.end(), neg_inf);
  std::fill(t.l.begin(), t.l.end(), T(0));
  const int last_key = c.qo + i0 + R - 1;
  for (int kb = 0; kb * kBk <= last_key; ++kb) {
    const int j0 = kb * kBk, cols = std::min(kBk, c.Nk - j0);
    const int wt = tile_width(c, i0, R, j0, cols);
    tile_logits(c, t, b, i0, R, kb);
    for (int hl = 0; hl < Hl; ++hl) {
      T* ah = t.a.data() + int64_t{hl} * kLd;
      T* m = t.m.data() + hl * kBq;
      T* l = t.l.data() + hl * kBq;
      // alpha = e^(m_old − m_new) rescales what the row has summed so far (0 while m_old = −∞;
      // 1 for a row that sees no key of this block), exponentiated for all rows at once.
      T alpha[kBq], sum[kBq];
      for (int r = 0; r < R; ++r) {
        T* row = ah + r * kBk;
        const int n = visible(c.qo + i0 + r, j0, cols);
        if (n == 0) {
          std::fill(row, row + kBk, T(0));
          alpha[r] = T(0);
          sum[r] = T(0);
          continue;
        }
        const T m_new = std::max(m[r], simd::row_max(row, n));
        sum[r] = simd::exp_shifted_sum(row, n, m_new);
        std::fill(row + n, row + kBk, T(0));
        alpha[r] = m[r] - m_new;
        m[r] = m_new;
      }
      simd::exp_shifted(alpha, R, T(0));
      for (int r = 0; r < R; ++r) l[r] = l[r] * alpha[r] + sum[r];
      // O = O·α + P·V for this head's rows.
      T* o = t.o.data() + int64_t{hl} * kBq * D;
      for (int r = 0; r < R; ++r) {
        const T al = alpha[r];
        T* orow = o + int64_t{r} * D;
#pragma omp simd
        for (int d = 0; d < D; ++d) orow[d] *= al;
      }
      const T* vrows = c.v + b * c.vbs + int64_t{j0} * c.vs + hl * D;
      simd::weighted_row_sums_acc(R, std::min(cols, wt), ah, kBk, 1, vrows, c.vs, D, T(1), o, D);
    }
  }
  for (int hl = 0; hl < Hl; ++hl)
    for (int r = 0; r < R; ++r) {
      const T l = t.l[hl * kBq + r];
      const T inv = T(1) / l;
      const T* o = t.o.data() + (int64_t{hl} * kBq + r) * D;
      T* dst = out + ((int64_t{b} * c.Nq + i0 + r) * Hl + hl) * D;
#pragma omp simd
      for (int d = 0; d < D; ++d) dst[d] = o[d] * inv;
      lse[(int64_t{b} * Hl + hl) * c.Nq + i0 + r] = t.m[hl * kBq + r] + std::log(l);
    }
}

// ---- backward: parameter-gradient partials ------------------------------------------------------

// Lane-wise accumulators of one task's parameter gradients, in a fixed layout.
template <class T>
struct GradLayout {
  int64_t w1 = 0, b1 = 0, w2 = 0, b2 = 0;                       // f (w2, b2: the local heads' rows)
  int64_t kp = 0, ka = 0;                                       // Kerple
  int64_t c = 0, mult = 0, gw1 = 0, gb1 = 0, gw2 = 0, gb2 = 0;  // FIRE
  int64_t total = 0;

  explicit GradLayout(const Call<T>& cl) {
    auto take = [&](int64_t n) {
      const int64_t at = total;
      total += n;
      return at;
    };
    if (cl.dape) {
      w1 = take(int64_t{cl.W} * 2 * cl.H);
      b1 = take(cl.W);
      w2 = take(int64_t{cl.Hl} * cl.W);
      b2 = take(cl.Hl);
    }
    if (cl.scheme == PositionScheme::kerple) {
      kp = take(cl.H);
      ka = take(cl.H);
    }
    if (cl.scheme == PositionScheme::fire) {
      c = take(1);
      mult = take(1);
      gw1 = take(cl.G);
      gb1 = take(cl.G);
      gw2 = take(int64_t{cl.H} * cl.G);
      gb2 = take(cl.H);
    }
  }
};

// The lane accumulators hold one tile's terms; the sum over tiles runs in double, which keeps f's
// weight gradients (sums over N² pairs with heavy cancellation) accurate.
template <class T>
void flush_partials(const GradLayout<T>& gl, Vec<T>* acc, double* partial) {
  for (int64_t i = 0; i < gl.total; ++i) {
    partial[i] += static_cast<double>(simd::lane_sum<T>(acc[i]));
    acc[i] = Vec<T>{};
  }
}

// f by distance, per tile: adds ∂/∂hidden (t.da) and, for Kerple, the local heads' dA of every
// covered pair into the task's per-distance sums (t.dist, reversed like the tables). A row of
// the tile is a contiguous stretch of distances, so this is a vector add per row and feature.
template <class T>
void add_by_distance(const Call<T>& c, Tile<T>& t, int i0, int R, int j0, const PairSpans& spans) {
  const int W = c.W;
  const bool kerple = c.scheme == PositionScheme::kerple;
  for (int r = 0; r < R; ++r) {
    const int w = spans.width[r];
    if (w == 0) continue;
    const int64_t base = c.table_base(c.qo + i0 + r, j0);
    for (int f = 0; f < W; ++f) {
      T* d = t.dist.data() + f * c.ld + base;
      const T* src = t.da.data() + int64_t{f} * kLd + r * kBk;
#pragma omp simd
      for (int j = 0; j < w; ++j) d[j] += src[j];
    }
    if (kerple)
      for (int hl = 0; hl < c.Hl; ++hl) {
        T* d = t.dist.data() + (W + c.h0 + hl) * c.ld + base;
        const T* src = t.dp.data() + int64_t{hl} * kLd + r * kBk;
#pragma omp simd
        for (int j = 0; j < w; ++j) d[j] += src[j];
      }
  }
}

// f by distance, per task: the gradients that went through B, from the per-distance sums
// Σ∂/∂hidden(r) over the task's distances: b1 += Σ_r, W1_B += Σ_r ·B(r)ᵀ, and for Kerple
// ∂B(r) = dA(r) + W1_Bᵀ·Σ∂/∂hidden(r) against ∂B/∂p and ∂B/∂a. Then the sums are cleared.
template <class T>
void finish_by_distance(const Call<T>& c, const GradLayout<T>& gl, Tile<T>& t, int i0, int R,
                        Vec<T>* acc) {
  constexpr int L = kLanes<T>;
  const int W = c.W, H = c.H;
  const int first = c.qo + i0, last = first + R - 1;
  const int64_t lo = c.table_base(last, 0) / L * L;
  const int64_t hi =
      std::min<int64_t>((c.table_base(first, last / kBk * kBk) + kBk + L - 1) / L * L, c.ld);
  const int n = static_cast<int>(hi - lo);
  T* dz = t.dist.data() + lo;
  simd::panel_row_sums(W, dz, c.ld, n, acc + gl.b1);
  if (c.has_bias)
    simd::panel_outer(W, H, dz, c.ld, c.bias_rev.data() + lo, c.ld, n, acc + gl.w1 + H, 2 * H);
  int rows = W;
  if (c.scheme == PositionScheme::kerple) {
    T* db = dz + int64_t{W} * c.ld;
    simd::panel_gemm(H, W, c.w1 + H, 1, 2 * H, dz, c.ld, db, c.ld, n, nullptr, true);
    for (int h = 0; h < H; ++h) {
      simd::panel_outer(1, 1, db + h * c.ld, c.ld, c.dp_rev.data() + h * c.ld + lo, c.ld, n,
                        acc + gl.kp + h);
      simd::panel_outer(1, 1, db + h * c.ld, c.ld, c.da_rev.data() + h * c.ld + lo, c.ld, n,
                        acc + gl.ka + h);
    }
    rows += H;
  }
  for (int f = 0; f < rows; ++f) std::fill(dz + f * c.ld, dz + f * c.ld + n, T(0));
}

template <class T>
void backward_task(const Call<T>& c, const GradLayout<T>& gl, Tile<T>& t, int b, int i0,
                   const T* out, const T* lse, const T* dout, T* dq, T* dk_acc, T* dv_acc,
                   int acc_b, Vec<T>* acc, double* partial) {
  const int R = std::min(kBq, c.Nq - i0), H = c.H, D = c.D, Hl = c.Hl, h0 = c.h0, W = c.W;
  const int np = R * kBk;
  const int64_t HlD = int64_t{Hl} * D;
  load_queries(c, t, b, i0, R);
  std::fill(t.dq.begin(), t.dq.end(), T(0));
  T* dO = t.dout.data();  // [Hl][Bq][D]
  for (int r = 0; r < R; ++r)
    for (int hl = 0; hl < Hl; ++hl) {
      const T* src = dout + (int64_t{b} * c.Nq + i0 + r) * HlD + hl * D;
      std::copy(src, src + D, dO + (int64_t{hl} * kBq + r) * D);
    }
  for (int hl = 0; hl < Hl; ++hl)
    for (int r = 0; r < R; ++r) {
      const T* o = out + (int64_t{b} * c.Nq + i0 + r) * HlD + hl * D;
      const T* g = dO + (int64_t{hl} * kBq + r) * D;
      double s = 0;
      for (int d = 0; d < D; ++d) s += static_cast<double>(o[d]) * g[d];
      t.di[hl * kBq + r] = static_cast<T>(s);
    }
  // Heads whose dS (and dB) this call produces: all with DAPE (f mixes them), else the local ones.
  const int ds_begin = c.dape ? 0 : h0, ds_end = c.dape ? H : h0 + Hl;
  auto dS = [&](int h) -> T* {
    return c.dape ? t.dx.data() + int64_t{h} * kLd : t.dp.data() + int64_t{h - h0} * kLd;
  };
  auto dB = [&](int h) -> T* {
    return c.dape ? t.dx.data() + int64_t{H + h} * kLd : t.dp.data() + int64_t{h - h0} * kLd;
  };
  const int last_key = c.qo + i0 + R - 1;
  for (int kb = 0; kb * kBk <= last_key; ++kb) {
    const int j0 = kb * kBk, cols = std::min(kBk, c.Nk - j0);
    const int wt = tile_width(c, i0, R, j0, cols), nk = std::min(cols, wt);
    tile_logits(c, t, b, i0, R, kb);
    // P = exp(A − lse), zero where a key is not visible.
    for (int hl = 0; hl < Hl; ++hl)
      for (int r = 0; r < R; ++r) {
        T* row = t.a.data() + int64_t{hl} * kLd + r * kBk;
        const int n = visible(c.qo + i0 + r, j0, cols);
        simd::exp_shifted(row, n, lse[(int64_t{b} * Hl + hl) * c.Nq + i0 + r]);
        std::fill(row + n, row + kBk, T(0));
      }
    // dP = dO·Vᵀ, dA = P ⊙ (dP − Di); dv += Pᵀ·dO.
    const T* vt = c.vt_block(b, kb);
    for (int hl = 0; hl < Hl; ++hl) {
      T* dph = t.dp.data() + int64_t{hl} * kLd;
      const T* ph = t.a.data() + int64_t{hl} * kLd;
      simd::panel_gemm(R, D, dO + int64_t{hl} * kBq * D, D, 1, vt + int64_t{hl} * D * kBk, kBk, dph,
                       kBk, wt, nullptr, false,
                       SoftmaxGradEpilogue<T>{ph, kBk, t.di.data() + hl * kBq});
      if (wt < kBk)  // dA is zero past the tile's width; later steps read whole rows
        for (int r = 0; r < R; ++r) std::fill(dph + r * kBk + wt, dph + (r + 1) * kBk, T(0));
      T* dv = dv_acc + ((int64_t{acc_b} * Hl + hl) * c.Nk + j0) * D;  // head-major accumulator
      simd::weighted_row_sums_acc(nk, R, ph, 1, kBk, dO + int64_t{hl} * kBq * D, D, D, T(1), dv, D);
    }
    // f backward: dS = dA + ∂f/∂S, dB = dA + ∂f/∂B (local heads' dA; f feeds every head). By
    // distance, ∂f/∂B is summed per distance instead (add_by_distance, finish_by_distance).
    if (c.dape) {
      T* x = t.x.data();
      const PairSpans spans = pair_spans(c, i0, R, j0, cols, kChunk);
      const int nx = c.f_by_distance ? H : 2 * H;  // rows of ∂f/∂[S; B] formed per pair
      for (int k = 0; k < spans.count; ++k) {
        const int c0 = spans.begin[k], n = spans.size[k];
        T* da = t.da.data() + c0;
        const T* act = t.act.data() + c0;
        const T* dA = t.dp.data() + c0;
        simd::panel_gemm(
            W, Hl, c.w2 + int64_t{h0} * W, 1, W, dA, kLd, da, kLd, n, nullptr, false,
            ActivationGradEpilogue<T>{act, kLd, am::activation_negative_slope<T>(true)});
        simd::panel_gemm(nx, W, c.w1, 1, 2 * H, da, kLd, t.dx.data() + c0, kLd, n, nullptr, false);
        for (int hl = 0; hl < Hl; ++hl) {
          const T* src = dA + int64_t{hl} * kLd;
          T* ds = t.dx.data() + int64_t{h0 + hl} * kLd + c0;
#pragma omp simd
          for (int p = 0; p < n; ++p) ds[p] += src[p];
          if (!c.f_by_distance) {
            T* db = t.dx.data() + int64_t{H + h0 + hl} * kLd + c0;
#pragma omp simd
            for (int p = 0; p < n; ++p) db[p] += src[p];
          }
        }
      }
      if (!spans.full) {  // dS and dB are zero past each row's span (masked pairs)
        for (int r = 0; r < R; ++r)
          for (int f = 0; f < nx; ++f) {
            T* row = t.dx.data() + int64_t{f} * kLd + r * kBk;
            std::fill(row + spans.width[r], row + kBk, T(0));
          }
      }
      // f's weight gradients over longer stretches of pairs where the tile is full: the lane
      // accumulators (W·2H + H·W vectors, more than L1 holds) are loaded and stored once per
      // stretch.
      const PairSpans sums = spans.full ? pair_spans(c, i0, R, j0, cols, kOuterChunk) : spans;
      for (int k = 0; k < sums.count; ++k) {
        const int c0 = sums.begin[k], n = sums.size[k];
        const T* dA = t.dp.data() + c0;
        const T* da = t.da.data() + c0;
        simd::panel_outer(Hl, W, dA, kLd, t.act.data() + c0, kLd, n, acc + gl.w2);
        simd::panel_row_sums(Hl, dA, kLd, n, acc + gl.b2);
        if (c.f_by_distance) {
          simd::panel_outer(W, H, da, kLd, x + c0, kLd, n, acc + gl.w1, 2 * H);
        } else {
          simd::panel_outer(W, 2 * H, da, kLd, x + c0, kLd, n, acc + gl.w1);
          simd::panel_row_sums(W, da, kLd, n, acc + gl.b1);
        }
      }
      if (c.f_by_distance) add_by_distance(c, t, i0, R, j0, spans);
    }
    // The scheme's parameters, from dB.
    if (c.scheme == PositionScheme::kerple && !c.f_by_distance) {
      constexpr int L = kLanes<T>;
      for (int h = ds_begin; h < ds_end; ++h)
        for (int r = 0; r < R; ++r) {
          const int64_t base = h * c.ld + c.table_base(c.qo + i0 + r, j0);
          const T* g = dB(h) + r * kBk;
          for (int j = 0; j < wt; j += L) {
            const Vec<T> gv = simd::load(g + j);
            acc[gl.kp + h] += gv * simd::load(c.dp_rev.data() + base + j);
            acc[gl.ka + h] += gv * simd::load(c.da_rev.data() + base + j);
          }
        }
    } else if (c.scheme == PositionScheme::fire) {
      // g's input gradient needs dB for every head: without DAPE only the local heads have one.
      T* dbp = t.dx.data() + int64_t{H} * kLd;
      if (!c.dape) {
        for (int h = 0; h < H; ++h) {
          T* row = dbp + int64_t{h} * kLd;
          if (h >= h0 && h < h0 + Hl)
            std::copy(dB(h), dB(h) + np, row);
          else
            std::fill(row, row + np, T(0));
        }
      }
      const int G = c.G;
      T* gda = t.da.data();
      simd::panel_gemm(G, H, c.gw2, 1, G, dbp, kLd, gda, kLd, np, nullptr, false);
      simd::panel_outer(H, G, dbp, kLd, t.gact.data(), kLd, np, acc + gl.gw2);
      simd::panel_row_sums(H, dbp, kLd, np, acc + gl.gb2);
      simd::panel_activate_backward(gda, t.gact.data(), G, kLd, np,
                                    am::activation_negative_slope<T>(c.g_leaky));
      simd::panel_gemm(1, G, c.gw1, 0, 1, gda, kLd, t.du.data(), kLd, np, nullptr, false);
      simd::panel_outer(G, 1, gda, kLd, t.u.data(), kLd, np, acc + gl.gw1);
      simd::panel_row_sums(G, gda, kLd, np, acc + gl.gb1);
      for (int r = 0; r < R; ++r) {
        const int qi = c.qo + i0 + r;
        const int64_t base = c.table_base(qi, j0);
        const T* psi = c.psi_rev.data() + base;
        const T* psi_dc = c.psi_dc_rev.data() + base;
        const T inv = c.inv_den[qi], fb = c.fb[qi], fk = c.fk[qi];
        T* dudc = t.dudc.data() + r * kBk;
        T* dudm = t.dudm.data() + r * kBk;
#pragma omp simd
        for (int j = 0; j < kBk; ++j) {
          dudc[j] = psi_dc[j] * inv - psi[j] * fb;
          dudm[j] = psi[j] * fk;
        }
      }
      simd::panel_outer(1, 1, t.du.data(), kLd, t.dudc.data(), kLd, np, acc + gl.c);
      simd::panel_outer(1, 1, t.du.data(), kLd, t.dudm.data(), kLd, np, acc + gl.mult);
    }
    // dq += dS·K/√D (rows of this task); dk += dSᵀ·Q/√D (per-thread accumulator).
    for (int h = ds_begin; h < ds_end; ++h) {
      const T* ds = dS(h);
      const T* krows = c.k + b * c.kbs + int64_t{j0} * c.ks + h * D;
      simd::weighted_row_sums_acc(R, nk, ds, kBk, 1, krows, c.ks, D, c.scale,
                                  t.dq.data() + int64_t{h} * kBq * D, D);
      T* dk = dk_acc + ((int64_t{acc_b} * H + h) * c.Nk + j0) * D;  // head-major accumulator
      simd::weighted_row_sums_acc(nk, R, ds, 1, kBk, t.qsc.data() + int64_t{h} * kBq * D, D, D,
                                  T(1), dk, D);
    }
    flush_partials(gl, acc, partial);
  }
  if (c.f_by_distance) {
    finish_by_distance(c, gl, t, i0, R, acc);
    flush_partials(gl, acc, partial);
  }
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < H; ++h) {
      const T* src = t.dq.data() + (int64_t{h} * kBq + r) * D;
      std::copy(src, src + D, dq + (int64_t{b} * c.Nq + i0 + r) * c.qs + h * D);
    }
}

// grad[i] += Σ_task partial[task][offset + i], summed in double in task order.
template <class T>
void add_partials(const Tensor& grad, int64_t grad_offset, const std::vector<double>& partials,
                  int tasks, int64_t stride, int64_t offset, int64_t n) {
  T* g = grad.ptr<T>() + grad_offset;
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int task = 0; task < tasks; ++task) s += partials[task * stride + offset + i];
    g[i] = static_cast<T>(g[i] + s);
  }
}

}  // namespace

template <class T>
void attention_fused_forward(const AttentionInputs& in, T* out, T* lse) {
  const Call<T> c = make_call<T>(in);
  const int nqb = (c.Nq + kBq - 1) / kBq, tasks = c.B * nqb;
#pragma omp parallel
  {
    Tile<T> t(c, false);
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < tasks; ++task)
      forward_task(c, t, task / nqb, (task % nqb) * kBq, out, lse);
  }
}

template <class T>
void attention_fused_backward(const AttentionInputs& in, const T* out, const T* lse, const T* dout,
                              const AttentionGrads& grads) {
  Call<T> c = make_call<T>(in);
  pack_for_backward(c);
  const DType dt = dtype_of<T>();
  const int64_t HD = int64_t{c.H} * c.D, HlD = int64_t{c.Hl} * c.D;
  check_tensor(grads.dq, dt, int64_t{c.B} * c.Nq * HD, "dq");
  check_tensor(grads.dk, dt, int64_t{c.B} * c.Nk * HD, "dk");
  check_tensor(grads.dv, dt, int64_t{c.B} * c.Nk * HlD, "dv");
  const GradLayout<T> gl(c);
  const int nqb = (c.Nq + kBq - 1) / kBq, tasks = c.B * nqb;
  const int threads = omp_get_max_threads();
  std::vector<double> partials(static_cast<size_t>(tasks) * std::max<int64_t>(gl.total, 1), 0.0);
  T* dq = grads.dq.ptr<T>();
  T* dk = grads.dk.ptr<T>();
  T* dv = grads.dv.ptr<T>();
  // dk and dv of keys [j_begin, j_end) of sequence b from head-major accumulators ([H][Nk][D]
  // and [Hl][Nk][D] per copy), summed over `copies` of them (k_stride and v_stride apart), in
  // order.
  auto write_dkdv = [&](int b, int j_begin, int j_end, const T* k_acc, const T* v_acc, int copies,
                        int64_t k_stride, int64_t v_stride) {
    for (int j = j_begin; j < j_end; ++j) {
      for (int h = 0; h < c.H; ++h) {
        T* d = dk + b * c.kbs + int64_t{j} * c.ks + h * c.D;
        const T* src = k_acc + (int64_t{h} * c.Nk + j) * c.D;
        std::copy(src, src + c.D, d);
        for (int i = 1; i < copies; ++i)
#pragma omp simd
          for (int e = 0; e < c.D; ++e) d[e] += src[i * k_stride + e];
      }
      for (int hl = 0; hl < c.Hl; ++hl) {
        T* d = dv + b * c.vbs + int64_t{j} * c.vs + hl * c.D;
        const T* src = v_acc + (int64_t{hl} * c.Nk + j) * c.D;
        std::copy(src, src + c.D, d);
        for (int i = 1; i < copies; ++i)
#pragma omp simd
          for (int e = 0; e < c.D; ++e) d[e] += src[i * v_stride + e];
      }
    }
  };
  const int64_t seq_k = int64_t{c.Nk} * HD, seq_v = int64_t{c.Nk} * HlD;
  if (c.B >= threads) {
    // Enough sequences to go round: each thread owns whole sequences, so dk and dv accumulate in
    // one sequence-sized scratch and go out once, with no per-thread copies of the batch.
#pragma omp parallel num_threads(threads)
    {
      Tile<T> t(c, true);
      std::vector<Vec<T>> acc(std::max<int64_t>(gl.total, 1));
      std::vector<T> k_acc(seq_k), v_acc(seq_v);
#pragma omp for schedule(dynamic, 1)
      for (int b = 0; b < c.B; ++b) {
        std::fill(k_acc.begin(), k_acc.end(), T(0));
        std::fill(v_acc.begin(), v_acc.end(), T(0));
        for (int qb = 0; qb < nqb; ++qb) {
          const int task = b * nqb + qb;
          backward_task(c, gl, t, b, qb * kBq, out, lse, dout, dq, k_acc.data(), v_acc.data(), 0,
                        acc.data(), partials.data() + task * gl.total);
        }
        write_dkdv(b, 0, c.Nk, k_acc.data(), v_acc.data(), 1, 0, 0);
      }
    }
  } else {
    // Few long sequences: threads share them by query blocks, each accumulating dk and dv for
    // the whole batch (in its own buffer, zeroed by that thread), summed in thread order
    // afterwards. Tasks are dealt in a fixed snake order (0, 1, …, T−1, then T−1 … 0 of the next
    // round): query blocks grow in cost along the causal triangle, and the snake evens out the
    // threads' shares where a round-robin deal would leave the last thread the most work.
    const int64_t dk_size = int64_t{c.B} * seq_k, dv_size = int64_t{c.B} * seq_v;
    std::unique_ptr<T[]> dk_acc(new T[static_cast<size_t>(threads) * dk_size]);
    std::unique_ptr<T[]> dv_acc(new T[static_cast<size_t>(threads) * dv_size]);
#pragma omp parallel num_threads(threads)
    {
      const int tid = omp_get_thread_num();
      T* k_acc = dk_acc.get() + tid * dk_size;
      T* v_acc = dv_acc.get() + tid * dv_size;
      std::fill(k_acc, k_acc + dk_size, T(0));
      std::fill(v_acc, v_acc + dv_size, T(0));
      Tile<T> t(c, true);
      std::vector<Vec<T>> acc(std::max<int64_t>(gl.total, 1));
#pragma omp for schedule(static, 1)
      for (int i = 0; i < tasks; ++i) {
        const int round = i / threads, pos = i % threads;
        const int in_round = std::min(threads, tasks - round * threads);
        const int task = round * threads + (round % 2 ? in_round - 1 - pos : pos);
        backward_task(c, gl, t, task / nqb, (task % nqb) * kBq, out, lse, dout, dq, k_acc, v_acc,
                      task / nqb, acc.data(), partials.data() + task * gl.total);
      }
    }
    const int key_chunks = (c.Nk + kBk - 1) / kBk;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < c.B; ++b)
      for (int kc = 0; kc < key_chunks; ++kc)
        write_dkdv(b, kc * kBk, std::min(c.Nk, (kc + 1) * kBk), dk_acc.get() + b * seq_k,
                   dv_acc.get() + b * seq_v, threads, dk_size, dv_size);
  }
  // Parameter gradients: the per-task partials, in task order.
  const int64_t st = gl.total;
  if (c.dape) {
    add_partials<T>(grads.dape.w1, 0, partials, tasks, st, gl.w1, int64_t{c.W} * 2 * c.H);
    add_partials<T>(grads.dape.b1, 0, partials, tasks, st, gl.b1, c.W);
    add_partials<T>(grads.dape.w2, int64_t{c.h0} * c.W, partials, tasks, st, gl.w2,
                    int64_t{c.Hl} * c.W);
    add_partials<T>(grads.dape.b2, c.h0, partials, tasks, st, gl.b2, c.Hl);
  }
  if (c.scheme == PositionScheme::kerple) {
    add_partials<T>(grads.bias.kerple_p, 0, partials, tasks, st, gl.kp, c.H);
    add_partials<T>(grads.bias.kerple_a, 0, partials, tasks, st, gl.ka, c.H);
  }
  if (c.scheme == PositionScheme::fire) {
    add_partials<T>(grads.bias.fire_c, 0, partials, tasks, st, gl.c, 1);
    add_partials<T>(grads.bias.fire_L_multiplier, 0, partials, tasks, st, gl.mult, 1);
    add_partials<T>(grads.bias.fire_w1, 0, partials, tasks, st, gl.gw1, c.G);
    add_partials<T>(grads.bias.fire_b1, 0, partials, tasks, st, gl.gb1, c.G);
    add_partials<T>(grads.bias.fire_w2, 0, partials, tasks, st, gl.gw2, int64_t{c.H} * c.G);
    add_partials<T>(grads.bias.fire_b2, 0, partials, tasks, st, gl.gb2, c.H);
  }
}

#define DAPE_INSTANTIATE(T)                                                                       \
  template void attention_fused_forward<T>(const AttentionInputs&, T*, T*);                       \
  template void attention_fused_backward<T>(const AttentionInputs&, const T*, const T*, const T*, \
                                            const AttentionGrads&);
DAPE_INSTANTIATE(float)
DAPE_INSTANTIATE(double)
#undef DAPE_INSTANTIATE

}  // namespace dape::cpu
