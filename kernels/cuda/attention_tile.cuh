/*
 * The fused DAPE attention's thread blocks: forward, dq (with the parameter gradients) and
 * dk/dv, each a sequence of phases over one tile of kBlockQueries query rows × kBlockKeys keys
 * at a time (attention_block.cuh explains phases and why nothing lives in registers across
 * them). attention_fused.cu runs these on the GPU; tests/unit/attention_cuda_emulation_test.cpp
 * runs them on the host.
 *
 * One tile, every head (f needs all H logits and biases of a pair):
 *   S   = Q_h·K_hᵀ/√D for every head h, a few heads' q and k tiles staged at a time   [GEMM]
 *   X   = [S; B] per pair, B from the scheme (ALiBi, Kerple, FIRE's g evaluated per pair);
 *         masked pairs (key after the query, rows past N, keys past M) get X = 0
 *   A   = S + B + b2 for the A-set heads, then += f's output:
 *         Z = Xᵀ·W1ᵀ [GEMM], act = LeakyReLU(Z + b1), A += act·W2ᵀ [GEMM], `chunk` pairs at a time
 * Forward: online softmax per (head, row) (masked pairs get P = 0, and a row without visible
 * keys in the tile leaves its running max and sum alone), O = O·α + P·V [GEMM], and at the end
 * out = O / l, lse = m + log l.
 * Backward, recomputing the tile: P = exp(A − lse); dP = dO·Vᵀ [GEMM]; dA = P ⊙ (dP − Di),
 * Di = dout·out; f's backward: dAct = dA·W2 [GEMM], dZ = dAct ⊙ LeakyReLU'(Z),
 * dX = dZ·W1 [GEMM] (dW2 += dAᵀ·act, dW1 += dZᵀ·X [GEMM], db1, db2 in the dq kernel);
 * dS = dX_S + dA, dB = dX_B + dA (dA of the local heads); then
 *   dq kernel   (query block fixed, key tiles 0 … last seen): dq += dS·K [GEMM], and the
 *               parameter gradients of the tile (f's, Kerple's from dB, FIRE's g from dB);
 *   dk/dv kernel (key tile fixed, query blocks first … last): dk += dSᵀ·Q, dv += Pᵀ·dO [GEMM].
 * dq and dk are scaled by 1/√D when written; both kernels recompute the tile, so neither needs
 * atomics: every output element is written by one block, and every sum runs in a fixed order.
 *
 * Heads. The A-set (heads whose logits are formed) is the forward block's group of local heads,
 * or every local head in backward (f's backward needs dA of all of them). Accumulators (O, dq,
 * dk, dv) are kept for one group of heads per block; with several groups (grid.y) each block
 * recomputes the tile for its group.
 */
#pragma once

#include <math.h>
#include <stdint.h>

#include "kernels/attention_math.h"
#include "kernels/attention_tiling.h"
#include "kernels/cuda/attention_block.cuh"
#include "kernels/cuda/attention_kernel_params.h"

namespace dape::cuda::tile {

namespace am = dape::attention_math;
namespace tiling = dape::attention_tiling;
using tiling::max_int;
using tiling::min_int;

constexpr int kP = tiling::kTilePairs;  // pairs per tile, p = row · kRows + key
constexpr int kRows = tiling::kBlockQueries;
static_assert(tiling::kBlockKeys == kRows);

// ---- shared memory -----------------------------------------------------------------------------

template <class T>
DAPE_TILE T* region(unsigned char* base, int offset) {
  return offset < 0 ? nullptr : reinterpret_cast<T*>(base + offset);
}

// The buffers of TileLayout (attention_tiling.h), typed. In fp32 mode the operand buffers are the
// float buffers themselves.
template <class Op>
struct Shared {
  float* x32;
  Op* xop;
  float* a32;
  Op* pop;
  float* da32;
  Op* daop;
  float* z32;
  Op* actop;
  float* dact32;
  Op* dzop;
  Op* dsop;
  Op* stage;
  float* acc;
  float* acc2;
  float* row_max;
  float* row_sum;
  float* row_scale;
  float* row_di;
  float* row_lse;
  Op* w1;
  float* b1;
  Op* w2;
  float* b2;
  float* head_p0;
  float* head_p1;
  float* fire_u;
  float* fire_dc;
  float* fire_dm;
  float* reduce;
  float* dw1;
  float* dw2;
  float* db1;

  DAPE_TILE Shared(unsigned char* m, const tiling::TileLayout& L)
      : x32(region<float>(m, L.x32)),
        xop(region<Op>(m, L.xop)),
        a32(region<float>(m, L.a32)),
        pop(region<Op>(m, L.pop)),
        da32(region<float>(m, L.da32)),
        daop(region<Op>(m, L.daop)),
        z32(region<float>(m, L.z32)),
        actop(region<Op>(m, L.actop)),
        dact32(region<float>(m, L.dact32)),
        dzop(region<Op>(m, L.dzop)),
        dsop(region<Op>(m, L.dsop)),
        stage(region<Op>(m, L.stage)),
        acc(region<float>(m, L.acc)),
        acc2(region<float>(m, L.acc2)),
        row_max(region<float>(m, L.row_max)),
        row_sum(region<float>(m, L.row_sum)),
        row_scale(region<float>(m, L.row_scale)),
        row_di(region<float>(m, L.row_di)),
        row_lse(region<float>(m, L.row_lse)),
        w1(region<Op>(m, L.w1)),
        b1(region<float>(m, L.b1)),
        w2(region<Op>(m, L.w2)),
        b2(region<float>(m, L.b2)),
        head_p0(region<float>(m, L.head_p0)),
        head_p1(region<float>(m, L.head_p1)),
        fire_u(region<float>(m, L.fire_u)),
        fire_dc(region<float>(m, L.fire_dc)),
        fire_dm(region<float>(m, L.fire_dm)),
        reduce(region<float>(m, L.reduce)),
        dw1(region<float>(m, L.dw1)),
        dw2(region<float>(m, L.dw2)),
        db1(region<float>(m, L.db1)) {}
};

// Every byte of the block's shared memory set to zero (the padding of every buffer stays zero
// from here on).
template <class Block>
DAPE_TILE void zero_shared(const Block& blk, unsigned char* smem, int64_t bytes) {
  blk.threads([&](int tid) {
    float* words = reinterpret_cast<float*>(smem);
    const int n = static_cast<int>(bytes / 4);
    for (int i = tid; i < n; i += kThreads) words[i] = 0.0f;
  });
}

// ---- where a tile is ---------------------------------------------------------------------------

struct TilePos {
  int b;     // sequence
  int t0;    // first query row
  int rows;  // query rows (kRows but in the last block)
  int j0;    // first key
  int keys;  // keys (kRows but in the last tile)
  int pos0;  // position of query row t0: M − N + t0
};

DAPE_TILE inline TilePos tile_pos(const AttentionKernelParams& p, int b, int qb, int kb) {
  TilePos t;
  t.b = b;
  t.t0 = qb * kRows;
  t.rows = tiling::rows_in_block(qb, p.N);
  t.j0 = kb * kRows;
  t.keys = tiling::keys_in_tile(kb, p.M);
  t.pos0 = p.M - p.N + t.t0;
  return t;
}

// Whether row r of the tile sees key c of the tile.
DAPE_TILE inline bool visible(const TilePos& t, int r, int c) {
  return r < t.rows && c < t.keys && t.j0 + c <= t.pos0 + r;
}

// i − j of pair (r, c), as the schemes take it.
DAPE_TILE inline float distance(const TilePos& t, int r, int c) {
  return static_cast<float>(t.pos0 + r - (t.j0 + c));
}

// FIRE's normalized distance of pair (r, c) and its derivatives (attention_math.h).
DAPE_TILE inline am::FireDistance<float> fire_distance(const AttentionKernelParams& p,
                                                       const TilePos& t, int r, int c) {
  return am::fire_distance<float>(static_cast<float>(t.pos0 + r), distance(t, r, c), p.fire_c[0],
                                  p.fire_mult[0], p.fire_L, static_cast<float>(am::kFireEps));
}

// ---- staging -----------------------------------------------------------------------------------

// Copies rows [0, kRows) of `count` heads from a strided global matrix (src: the tile's first
// row; head i at columns (first_head + i)·D) into operand slot `slot` of staged heads 0 … count−1,
// as [kRows][Dc], zero past `rows` and past D. Called by every thread inside a phase.
template <class Op>
DAPE_TILE void stage_rows(int tid, Op* stage, int Dc, int slot, int count, const float* src,
                          int64_t row_stride, int rows, int first_head, int D) {
  const int per_head = kRows * Dc;
  for (int idx = tid; idx < count * per_head; idx += kThreads) {
    const int i = idx / per_head, e = idx - i * per_head, r = e / Dc, d = e - r * Dc;
    float value = 0.0f;
    if (r < rows && d < D) value = src[r * row_stride + int64_t{first_head + i} * D + d];
    stage[(i * 2 + slot) * per_head + e] = to_operand<Op>(value);
  }
}

// ---- constants of a block ----------------------------------------------------------------------

// f's weights (W2's and b2's rows of the A-set heads [a_first_head, + a_heads), global indices)
// and the heads' bias parameters. One phase.
template <class Op, class Block>
DAPE_TILE void load_constants(const Block& blk, const AttentionKernelParams& p,
                              const tiling::TileLayout& L, const Shared<Op>& s, int a_first_head,
                              int a_heads) {
  blk.threads([&](int tid) {
    if (p.dape) {
      const int W = p.W, H2 = 2 * p.H;
      for (int idx = tid; idx < W * H2; idx += kThreads)
        s.w1[(idx / H2) * L.Hp2 + idx % H2] = to_operand<Op>(p.w1[idx]);
      for (int idx = tid; idx < W; idx += kThreads) s.b1[idx] = p.b1[idx];
      for (int idx = tid; idx < a_heads * W; idx += kThreads)
        s.w2[(idx / W) * L.Wp + idx % W] = to_operand<Op>(p.w2[a_first_head * W + idx]);
      for (int idx = tid; idx < a_heads; idx += kThreads) s.b2[idx] = p.b2[a_first_head + idx];
    }
    for (int h = tid; h < p.H; h += kThreads) {
      if (p.bias == BiasKind::alibi) {
        s.head_p0[h] = am::alibi_slope<float>(h, p.H);
      } else if (p.bias == BiasKind::kerple) {
        s.head_p0[h] = am::kerple_clamp(p.kerple_p[h]);
        s.head_p1[h] = am::kerple_clamp(p.kerple_a[h]);
      }
    }
  });
}

// ---- f's chunks ---------------------------------------------------------------------------------

// The columns [c0, c0 + chunk) of X (f's input, [Hp2][pairs]) and of dA ([Ap][pairs]) as GEMM
// operands, column p of the chunk at p: bf16 copies of the chunk (convert_chunk), or in fp32 the
// float tiles themselves.
template <class Mode>
DAPE_TILE Operand<typename Mode::Op> x_chunk(const Shared<typename Mode::Op>& s,
                                             const tiling::TileLayout& L, int c0) {
  if constexpr (Mode::kOwnOperands)
    return {s.xop, L.chunk, 0};
  else
    return {s.x32 + c0, kP, 0};
}
template <class Mode>
DAPE_TILE Operand<typename Mode::Op> da_chunk(const Shared<typename Mode::Op>& s,
                                              const tiling::TileLayout& L, int c0) {
  if constexpr (Mode::kOwnOperands)
    return {s.daop, L.chunk, 0};
  else
    return {s.da32 + c0, kP, 0};
}

// bf16: the bf16 copies of the chunk's columns of the first x_rows rows of X and of the first
// da_rows rows of dA (the padding rows of the copies stay zero). Called inside a phase.
template <class Mode>
DAPE_TILE void convert_chunk(int tid, const Shared<typename Mode::Op>& s,
                             const tiling::TileLayout& L, int c0, int x_rows, int da_rows) {
  using Op = typename Mode::Op;
  if constexpr (Mode::kOwnOperands) {
    const int n = L.chunk;
    for (int idx = tid; idx < x_rows * n; idx += kThreads)
      s.xop[idx] = to_operand<Op>(s.x32[(idx / n) * kP + c0 + idx % n]);
    for (int idx = tid; idx < da_rows * n; idx += kThreads)
      s.daop[idx] = to_operand<Op>(s.da32[(idx / n) * kP + c0 + idx % n]);
  }
}

// f's hidden layer for the pairs [c0, c0 + chunk): s.z32 = act = LeakyReLU(Z + b1) in float
// (act > 0 exactly when Z + b1 > 0, so it also gives the derivative), and with bf16 its operand
// copy s.actop. `convert`: make the bf16 copy of X's chunk first (else the caller has).
template <class Mode, class Block>
DAPE_TILE void f_hidden(const Block& blk, const AttentionKernelParams& p,
                        const tiling::TileLayout& L, const Shared<typename Mode::Op>& s, int c0,
                        bool convert) {
  using Op = typename Mode::Op;
  if (Mode::kOwnOperands && convert) {
    blk.threads([&](int tid) { convert_chunk<Mode>(tid, s, L, c0, 2 * p.H, 0); });
    blk.sync();
  }
  // Z[p][w] = Σ_f X[f][c0 + p] · W1[w][f]
  tile_gemm<ColMajor, ColMajor>(blk, 1, L.chunk, L.Wp, L.Hp2, x_chunk<Mode>(s, L, c0),
                                Operand<Op>{s.w1, L.Hp2, 0}, Result{s.z32, L.Wp, 0, false}, false);
  blk.sync();
  blk.threads([&](int tid) {
    for (int idx = tid; idx < L.chunk * L.Wp; idx += kThreads) {
      const float act = am::leaky_relu(s.z32[idx] + s.b1[idx % L.Wp]);
      s.z32[idx] = act;
      if constexpr (Mode::kOwnOperands) s.actop[idx] = to_operand<Op>(act);
    }
  });
  blk.sync();
}

// ---- the tile's logits -------------------------------------------------------------------------

// S, B and the logits A of the A-set (local heads [a_first, a_first + a_heads)) for one tile:
// s.x32 = [S; B] of every head, zero at masked pairs; s.a32 row la = A of local head
// a_first + la. f's hidden layer (and X's bf16 copy) of the last chunk stays in s.z32 /
// s.actop (s.xop).
template <class Mode, class Block>
DAPE_TILE void tile_logits(const Block& blk, const AttentionKernelParams& p,
                           const tiling::TileLayout& L, const Shared<typename Mode::Op>& s,
                           const TilePos& tp, int a_first, int a_heads) {
  using Op = typename Mode::Op;
  const int H = p.H, Dc = L.Dc, slot_stride = 2 * kRows * Dc;
  const float* q = p.q + int64_t{tp.b} * p.q_batch + int64_t{tp.t0} * p.q_row;
  const float* k = p.k + int64_t{tp.b} * p.k_batch + int64_t{tp.j0} * p.k_row;
  // S (unscaled) of every head, stage_heads heads at a time: q rows in slot 0, keys in slot 1.
  for (int h = 0; h < H; h += L.stage_heads) {
    const int n = min_int(L.stage_heads, H - h);
    blk.threads([&](int tid) {
      stage_rows(tid, s.stage, Dc, 0, n, q, p.q_row, tp.rows, h, p.D);
      stage_rows(tid, s.stage, Dc, 1, n, k, p.k_row, tp.keys, h, p.D);
    });
    blk.sync();
    tile_gemm<RowMajor, ColMajor>(blk, n, kRows, kRows, Dc, Operand<Op>{s.stage, Dc, slot_stride},
                                  Operand<Op>{s.stage + kRows * Dc, Dc, slot_stride},
                                  Result{s.x32 + h * kP, kRows, kP, false}, false);
    blk.sync();
  }
  // Per pair (one thread owns a pair's column of X and A): scale S, mask, the bias, A = S + B.
  blk.threads([&](int tid) {
    for (int pr = tid; pr < kP; pr += kThreads) {
      const int r = pr / kRows, c = pr % kRows;
      const bool vis = visible(tp, r, c);
      const float rel = distance(tp, r, c);
      for (int h = 0; h < H; ++h) {
        float& sv = s.x32[h * kP + pr];
        sv = vis ? sv * p.scale : 0.0f;
      }
      float* bias = s.x32 + H * kP + pr;  // head h at bias[h * kP]
      if (!vis || p.bias == BiasKind::none) {
        for (int h = 0; h < H; ++h) bias[h * kP] = 0.0f;
      } else if (p.bias == BiasKind::alibi) {
        for (int h = 0; h < H; ++h) bias[h * kP] = am::alibi_bias(s.head_p0[h], rel);
      } else if (p.bias == BiasKind::kerple) {
        for (int h = 0; h < H; ++h) bias[h * kP] = am::kerple_bias(s.head_p0[h], s.head_p1[h], rel);
      } else {  // FIRE: B[:, pair] = g(u) = W2g·act(w1g·u + b1g) + b2g
        const float u = fire_distance(p, tp, r, c).u;
        for (int h = 0; h < H; ++h) bias[h * kP] = p.fire_b2[h];
        for (int g = 0; g < p.G; ++g) {
          const float act = am::activation(p.fire_w1[g] * u + p.fire_b1[g], p.fire_leaky);
          for (int h = 0; h < H; ++h) bias[h * kP] += p.fire_w2[h * p.G + g] * act;
        }
      }
      for (int la = 0; la < a_heads; ++la) {
        const int h = p.h0 + a_first + la;
        s.a32[la * kP + pr] =
            s.x32[h * kP + pr] + s.x32[(H + h) * kP + pr] + (p.dape ? s.b2[la] : 0.0f);
      }
    }
  });
  blk.sync();
  if (!p.dape) return;
  for (int c0 = 0; c0 < kP; c0 += L.chunk) {
    f_hidden<Mode>(blk, p, L, s, c0, true);
    // A[la][c0 + p] += Σ_w act[p][w] · W2[la][w]
    tile_gemm<RowMajor, ColMajor>(blk, 1, L.chunk, L.Ap, L.Wp, Operand<Op>{s.actop, L.Wp, 0},
                                  Operand<Op>{s.w2, L.Wp, 0}, Result{s.a32 + c0, kP, 0, true},
                                  true);
    blk.sync();
  }
}

// ---- forward -----------------------------------------------------------------------------------

// Block `item` (sequence, query block) of the forward, for the group `group` of local heads.
template <class Mode, class Block>
DAPE_TILE void forward_block(const Block& blk, const AttentionKernelParams& p, unsigned char* smem,
                             int item, int group) {
  using Op = typename Mode::Op;
  const tiling::TileLayout& L = p.layout;
  const Shared<Op> s(smem, L);
  const int nqb = tiling::query_blocks(p.N), Dc = L.Dc, slot_stride = 2 * kRows * Dc;
  int b, qb, g_first, g_count;
  tiling::query_item(item, p.B, nqb, &b, &qb);
  tiling::group_heads(group, L.group, p.Hl, &g_first, &g_count);  // local head indices

  zero_shared(blk, smem, L.bytes);
  blk.sync();
  load_constants(blk, p, L, s, p.h0 + g_first, g_count);
  blk.threads([&](int tid) {
    for (int i = tid; i < g_count * kRows; i += kThreads) s.row_max[i] = -INFINITY;
  });
  blk.sync();

  const int tiles = tiling::key_tiles_seen(qb, p.N, p.M);
  for (int kb = 0; kb < tiles; ++kb) {
    const TilePos tp = tile_pos(p, b, qb, kb);
    tile_logits<Mode>(blk, p, L, s, tp, g_first, g_count);
    // Online softmax, one thread per (head, row): P in place of A (zero where masked).
    blk.threads([&](int tid) {
      for (int item_row = tid; item_row < g_count * kRows; item_row += kThreads) {
        const int la = item_row / kRows, r = item_row % kRows;
        float* row = s.a32 + la * kP + r * kRows;
        const int n = r < tp.rows ? tiling::visible_keys(tp.pos0 + r, tp.j0, tp.keys) : 0;
        float alpha = 1.0f;
        if (n == 0) {
          for (int c = 0; c < kRows; ++c) row[c] = 0.0f;
        } else {
          float tile_max = row[0];
          for (int c = 1; c < n; ++c) tile_max = fmaxf(tile_max, row[c]);
          const float m_old = s.row_max[item_row], m_new = fmaxf(m_old, tile_max);
          float sum = 0.0f;
          for (int i = 0; i < kRows; ++i) {
            const int c = (i + r) % kRows;  // rotated: the rows' threads hit different banks
            const float e = c < n ? expf(row[c] - m_new) : 0.0f;
            row[c] = e;
            sum += e;
          }
          alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
          s.row_sum[item_row] = s.row_sum[item_row] * alpha + sum;
          s.row_max[item_row] = m_new;
        }
        s.row_scale[item_row] = alpha;
        if constexpr (Mode::kOwnOperands) {
          for (int c = 0; c < kRows; ++c) s.pop[la * kP + r * kRows + c] = to_operand<Op>(row[c]);
        }
      }
    });
    blk.sync();
    // O = O·α + P·V, stage_heads heads' v tiles at a time (O rescaled with the first).
    const float* v = p.v + int64_t{tp.b} * p.v_batch + int64_t{tp.j0} * p.v_row;
    for (int la = 0; la < g_count; la += L.stage_heads) {
      const int n = min_int(L.stage_heads, g_count - la);
      blk.threads([&](int tid) {
        stage_rows(tid, s.stage, Dc, 0, n, v, p.v_row, tp.keys, g_first + la, p.D);
        if (la == 0) {
          for (int idx = tid; idx < g_count * kRows * Dc; idx += kThreads)
            s.acc[idx] *= s.row_scale[idx / Dc];
        }
      });
      blk.sync();
      tile_gemm<RowMajor, RowMajor>(blk, n, kRows, Dc, kRows,
                                    Operand<Op>{s.pop + la * kP, kRows, kP},
                                    Operand<Op>{s.stage, Dc, slot_stride},
                                    Result{s.acc + la * kRows * Dc, Dc, kRows * Dc, false}, true);
      blk.sync();
    }
  }
  // out = O / l, lse = m + log l, for the block's rows.
  const TilePos tp = tile_pos(p, b, qb, 0);
  blk.threads([&](int tid) {
    for (int idx = tid; idx < g_count * kRows * p.D; idx += kThreads) {
      const int la = idx / (kRows * p.D), e = idx % (kRows * p.D), r = e / p.D, d = e % p.D;
      if (r >= tp.rows) continue;
      const int hl = g_first + la;
      p.out[((int64_t{b} * p.N + tp.t0 + r) * p.Hl + hl) * p.D + d] =
          s.acc[(la * kRows + r) * Dc + d] / s.row_sum[la * kRows + r];
    }
    for (int idx = tid; idx < g_count * kRows; idx += kThreads) {
      const int la = idx / kRows, r = idx % kRows;
      if (r >= tp.rows) continue;
      p.lse[(int64_t{b} * p.Hl + g_first + la) * p.N + tp.t0 + r] =
          s.row_max[idx] + logf(s.row_sum[idx]);
    }
  });
}

// ---- backward ----------------------------------------------------------------------------------

// lse and Di = dout·out (summed in double) of every local head for the rows of query block tp,
// into s.row_lse and s.row_di (zero past the last row). Called inside a phase.
DAPE_TILE inline void load_row_stats(int tid, const AttentionKernelParams& p, float* row_lse,
                                     float* row_di, const TilePos& tp) {
  for (int idx = tid; idx < p.Hl * kRows; idx += kThreads) {
    const int hl = idx / kRows, r = idx % kRows;
    float lse = 0.0f, di = 0.0f;
    if (r < tp.rows) {
      const int t = tp.t0 + r;
      lse = p.saved_lse[(int64_t{tp.b} * p.Hl + hl) * p.N + t];
      const int64_t at = ((int64_t{tp.b} * p.N + t) * p.Hl + hl) * p.D;
      double sum = 0.0;
      for (int d = 0; d < p.D; ++d)
        sum += static_cast<double>(p.dout[at + d]) * static_cast<double>(p.saved_out[at + d]);
      di = static_cast<float>(sum);
    }
    row_lse[idx] = lse;
    row_di[idx] = di;
  }
}

// The backward of one tile, after tile_logits with every local head as the A-set: P, dP, dA,
// f's backward, and then dS (rows h) and dB (rows H + h) of every head in s.x32. With bf16,
// dS of the group's heads [g_first, g_first + g_count) also goes to s.dsop, and (dkdv) P of the
// group's local heads to s.pop. `grads`: f's weight gradients of the tile go to s.dw1, s.dw2,
// s.db1 (tile_parameter_gradients adds them up).
template <class Mode, class Block>
DAPE_TILE void tile_backward(const Block& blk, const AttentionKernelParams& p,
                             const tiling::TileLayout& L, const Shared<typename Mode::Op>& s,
                             const TilePos& tp, bool grads, bool dkdv, int g_first, int g_count) {
  using Op = typename Mode::Op;
  const int H = p.H, Hl = p.Hl, Dc = L.Dc, slot_stride = 2 * kRows * Dc;
  const int64_t out_row = int64_t{Hl} * p.D;
  const float* dout = p.dout + (int64_t{tp.b} * p.N + tp.t0) * out_row;
  const float* v = p.v + int64_t{tp.b} * p.v_batch + int64_t{tp.j0} * p.v_row;
  // dP = dO·Vᵀ per local head, stage_heads at a time; P = exp(A − lse) alongside the first.
  for (int hl = 0; hl < Hl; hl += L.stage_heads) {
    const int n = min_int(L.stage_heads, Hl - hl);
    blk.threads([&](int tid) {
      if (hl == 0) {
        for (int idx = tid; idx < Hl * kP; idx += kThreads) {
          const int la = idx / kP, pr = idx % kP, r = pr / kRows, c = pr % kRows;
          s.a32[idx] = visible(tp, r, c) ? expf(s.a32[idx] - s.row_lse[la * kRows + r]) : 0.0f;
        }
      }
      stage_rows(tid, s.stage, Dc, 0, n, dout, out_row, tp.rows, hl, p.D);
      stage_rows(tid, s.stage, Dc, 1, n, v, p.v_row, tp.keys, hl, p.D);
    });
    blk.sync();
    tile_gemm<RowMajor, ColMajor>(blk, n, kRows, kRows, Dc, Operand<Op>{s.stage, Dc, slot_stride},
                                  Operand<Op>{s.stage + kRows * Dc, Dc, slot_stride},
                                  Result{s.da32 + hl * kP, kRows, kP, false}, false);
    blk.sync();
  }
  // dA = P ⊙ (dP − Di), zero where masked.
  blk.threads([&](int tid) {
    for (int idx = tid; idx < Hl * kP; idx += kThreads) {
      const int la = idx / kP, pr = idx % kP, r = pr / kRows, c = pr % kRows;
      s.da32[idx] =
          visible(tp, r, c) ? s.a32[idx] * (s.da32[idx] - s.row_di[la * kRows + r]) : 0.0f;
    }
  });
  blk.sync();
  // f's backward, chunk by chunk: dAct = dA·W2[local], dZ = dAct ⊙ LeakyReLU'(Z), dX = dZ·W1.
  if (p.dape) {
    // With one chunk, f's hidden layer (and X's bf16 copy) is still there from the logits.
    const bool recompute = L.chunk < kP;
    for (int c0 = 0; c0 < kP; c0 += L.chunk) {
      if constexpr (Mode::kOwnOperands) {
        blk.threads(
            [&](int tid) { convert_chunk<Mode>(tid, s, L, c0, recompute ? 2 * H : 0, Hl); });
        blk.sync();
      }
      if (recompute) f_hidden<Mode>(blk, p, L, s, c0, false);
      const Operand<Op> da = da_chunk<Mode>(s, L, c0);
      if (grads) {  // dW2[la][w] += Σ_p dA[la][c0 + p] · act[p][w]
        tile_gemm<RowMajor, RowMajor>(blk, 1, L.Ap, L.Wp, L.chunk, da,
                                      Operand<Op>{s.actop, L.Wp, 0}, Result{s.dw2, L.Wp, 0, false},
                                      true);
      }
      // dAct[p][w] = Σ_la dA[la][c0 + p] · W2[la][w]
      tile_gemm<ColMajor, RowMajor>(blk, 1, L.chunk, L.Wp, L.Ap, da, Operand<Op>{s.w2, L.Wp, 0},
                                    Result{s.dact32, L.Wp, 0, false}, false);
      blk.sync();
      blk.threads([&](int tid) {
        for (int idx = tid; idx < L.chunk * L.Wp; idx += kThreads) {
          const float dz = s.dact32[idx] * am::leaky_relu_grad(s.z32[idx]);
          s.dact32[idx] = dz;
          if constexpr (Mode::kOwnOperands) s.dzop[idx] = to_operand<Op>(dz);
        }
      });
      blk.sync();
      if (grads) {  // dW1[w][f] += Σ_p dZ[p][w] · X[f][c0 + p]; db1[w] += Σ_p dZ[p][w]
        tile_gemm<ColMajor, ColMajor>(blk, 1, L.Wp, L.Hp2, L.chunk, Operand<Op>{s.dzop, L.Wp, 0},
                                      x_chunk<Mode>(s, L, c0), Result{s.dw1, L.Hp2, 0, false},
                                      true);
        blk.threads([&](int tid) {
          for (int w = tid; w < L.Wp; w += kThreads) {
            float sum = 0.0f;
            for (int pr = 0; pr < L.chunk; ++pr) sum += s.dact32[pr * L.Wp + w];
            s.db1[w] += sum;
          }
        });
      }
      blk.sync();
      // dX[f][c0 + p] = Σ_w dZ[p][w] · W1[w][f], over X's columns of the chunk (fp32: X is the
      // operand just read, done with by now).
      tile_gemm<RowMajor, RowMajor>(blk, 1, L.chunk, L.Hp2, L.Wp, Operand<Op>{s.dzop, L.Wp, 0},
                                    Operand<Op>{s.w1, L.Hp2, 0}, Result{s.x32 + c0, kP, 0, true},
                                    false);
      blk.sync();
    }
  }
  // dS = dX_S + dA and dB = dX_B + dA (A = S + B + f); without DAPE dS = dB = dA. dA counts on
  // the local heads only.
  blk.threads([&](int tid) {
    for (int idx = tid; idx < H * kP; idx += kThreads) {
      const int h = idx / kP, pr = idx % kP, hl = h - p.h0;
      const bool local = hl >= 0 && hl < Hl;
      const float da = local ? s.da32[hl * kP + pr] : 0.0f;
      float& ds = s.x32[h * kP + pr];
      float& db = s.x32[(H + h) * kP + pr];
      if (p.dape) {
        ds += da;
        db += da;
      } else {
        ds = da;
        db = da;
      }
      if constexpr (Mode::kOwnOperands) {
        const int gh = h - g_first;
        if (gh >= 0 && gh < g_count) {
          s.dsop[gh * kP + pr] = to_operand<Op>(ds);
          if (dkdv && local) s.pop[gh * kP + pr] = to_operand<Op>(s.a32[hl * kP + pr]);
        }
      }
    }
  });
  blk.sync();
}

// The tile's parameter gradients (dq kernel), added to the block's double sums `sums` (its slot
// of the partials workspace, laid out by p.grad; every element is updated by one thread in one
// phase per tile, and the barriers order the tiles' updates): f's from
// s.dw1, s.dw2, s.db1 (then cleared for the next tile) and from dA; Kerple's and FIRE's from dB.
// Every sum over pairs runs in a fixed order: per row of the tile first where the work is
// heavy (into s.reduce), then over the rows.
template <class Op, class Block>
DAPE_TILE void tile_parameter_gradients(const Block& blk, const AttentionKernelParams& p,
                                        const tiling::TileLayout& L, const Shared<Op>& s,
                                        const TilePos& tp, double* sums) {
  const tiling::GradLayout& g = p.grad;
  const int H = p.H, G = p.G;
  const float* dB = s.x32 + H * kP;  // head h at dB + h * kP
  blk.threads([&](int tid) {
    if (p.dape) {
      const int W = p.W, H2 = 2 * H;
      for (int idx = tid; idx < L.Wp * L.Hp2; idx += kThreads) {
        const int w = idx / L.Hp2, f = idx % L.Hp2;
        if (w < W && f < H2) sums[g.w1 + w * H2 + f] += s.dw1[idx];
        s.dw1[idx] = 0.0f;
      }
      for (int idx = tid; idx < L.Ap * L.Wp; idx += kThreads) {
        const int la = idx / L.Wp, w = idx % L.Wp;
        if (la < p.Hl && w < W) sums[g.w2 + la * W + w] += s.dw2[idx];
        s.dw2[idx] = 0.0f;
      }
      for (int w = tid; w < L.Wp; w += kThreads) {
        if (w < W) sums[g.b1 + w] += s.db1[w];
        s.db1[w] = 0.0f;
      }
      for (int la = tid; la < p.Hl; la += kThreads) {
        float sum = 0.0f;
        for (int pr = 0; pr < kP; ++pr) sum += s.da32[la * kP + pr];
        sums[g.b2 + la] += sum;
      }
    }
    if (p.bias == BiasKind::kerple) {  // per (∂p or ∂a, head, row): Σ_keys dB · ∂B/∂(p or a)
      static_assert(tiling::kKerpleParts == kRows);
      for (int idx = tid; idx < 2 * H * kRows; idx += kThreads) {
        const int kind = idx / (H * kRows), h = (idx / kRows) % H, r = idx % kRows;
        float sum = 0.0f;
        for (int c = 0; c < kRows; ++c) {
          if (!visible(tp, r, c)) continue;
          const float rel = distance(tp, r, c);
          const float dbias = kind == 0 ? am::kerple_bias_dp(s.head_p1[h], rel)
                                        : am::kerple_bias_da(s.head_p0[h], s.head_p1[h], rel);
          sum += dB[h * kP + r * kRows + c] * dbias;
        }
        s.reduce[idx] = sum;
      }
    }
    if (p.bias == BiasKind::fire) {  // per pair: u, and ∂L/∂u times ∂u/∂c and ∂u/∂L_mult
      for (int pr = tid; pr < kP; pr += kThreads) {
        const int r = pr / kRows, c = pr % kRows;
        float u = 0.0f, dc = 0.0f, dm = 0.0f;
        if (visible(tp, r, c)) {
          const am::FireDistance<float> fd = fire_distance(p, tp, r, c);
          u = fd.u;
          float du = 0.0f;  // Σ_g w1g[g] · act'(z_g) · Σ_h W2g[h][g] · dB[h]
          for (int gi = 0; gi < G; ++gi) {
            const float z = p.fire_w1[gi] * u + p.fire_b1[gi];
            float dact = 0.0f;
            for (int h = 0; h < H; ++h) dact += p.fire_w2[h * G + gi] * dB[h * kP + pr];
            du += p.fire_w1[gi] * (dact * am::activation_grad(z, p.fire_leaky));
          }
          dc = du * fd.du_dc;
          dm = du * fd.du_dmult;
        }
        s.fire_u[pr] = u;
        s.fire_dc[pr] = dc;
        s.fire_dm[pr] = dm;
      }
    }
  });
  blk.sync();
  if (p.bias == BiasKind::kerple) {
    blk.threads([&](int tid) {
      for (int idx = tid; idx < 2 * H; idx += kThreads) {
        float sum = 0.0f;
        for (int r = 0; r < kRows; ++r) sum += s.reduce[idx * kRows + r];
        sums[(idx < H ? g.kerple_p : g.kerple_a - H) + idx] += sum;
      }
    });
    blk.sync();
  } else if (p.bias == BiasKind::fire) {
    blk.threads([&](int tid) {
      // g's first layer, per (unit, part of the tile's pairs): Σ dZ·u and Σ dZ.
      constexpr int kParts = tiling::kFireParts, kPairsPerPart = kP / kParts;
      for (int idx = tid; idx < G * kParts; idx += kThreads) {
        const int gi = idx / kParts, part = idx % kParts;
        float sum_w = 0.0f, sum_b = 0.0f;
        for (int pr = part * kPairsPerPart; pr < (part + 1) * kPairsPerPart; ++pr) {
          const float u = s.fire_u[pr], z = p.fire_w1[gi] * u + p.fire_b1[gi];
          float dact = 0.0f;
          for (int h = 0; h < H; ++h) dact += p.fire_w2[h * G + gi] * dB[h * kP + pr];
          const float dz = dact * am::activation_grad(z, p.fire_leaky);
          sum_w += dz * u;
          sum_b += dz;
        }
        s.reduce[(2 * gi) * kParts + part] = sum_w;
        s.reduce[(2 * gi + 1) * kParts + part] = sum_b;
      }
      // g's second layer: Σ_pairs dB[h] · act_g, Σ_pairs dB[h].
      for (int idx = tid; idx < H * G; idx += kThreads) {
        const int h = idx / G, gi = idx % G;
        float sum = 0.0f;
        for (int pr = 0; pr < kP; ++pr)
          sum += dB[h * kP + pr] *
                 am::activation(p.fire_w1[gi] * s.fire_u[pr] + p.fire_b1[gi], p.fire_leaky);
        sums[g.fire_w2 + idx] += sum;
      }
      for (int h = tid; h < H; h += kThreads) {
        float sum = 0.0f;
        for (int pr = 0; pr < kP; ++pr) sum += dB[h * kP + pr];
        sums[g.fire_b2 + h] += sum;
      }
      for (int idx = tid; idx < 2; idx += kThreads) {
        const float* terms = idx == 0 ? s.fire_dc : s.fire_dm;
        float sum = 0.0f;
        for (int pr = 0; pr < kP; ++pr) sum += terms[pr];
        sums[idx == 0 ? g.fire_c : g.fire_mult] += sum;
      }
    });
    blk.sync();
    blk.threads([&](int tid) {
      for (int gi = tid; gi < G; gi += kThreads) {
        float sum_w = 0.0f, sum_b = 0.0f;
        for (int part = 0; part < tiling::kFireParts; ++part) {
          sum_w += s.reduce[(2 * gi) * tiling::kFireParts + part];
          sum_b += s.reduce[(2 * gi + 1) * tiling::kFireParts + part];
        }
        sums[g.fire_w1 + gi] += sum_w;
        sums[g.fire_b1 + gi] += sum_b;
      }
    });
    blk.sync();
  }
}

// The operand pointer of dS for head h (of the group starting at g_first).
template <class Mode>
DAPE_TILE const typename Mode::Op* ds_operand(const Shared<typename Mode::Op>& s, int h,
                                              int g_first) {
  if constexpr (Mode::kOwnOperands)
    return s.dsop + (h - g_first) * kP;
  else
    return s.x32 + h * kP;
}

// Block `block` of `blocks` of the dq kernel, for the group `group` of all H heads: loops over
// the work items (sequence, query block) block, block + blocks, ...; dq of the group's heads;
// with group 0 and parameter gradients in the layout, the parameter gradients of every tile it
// sees, summed in the block's slot of p.partials.
template <class Mode, class Block>
DAPE_TILE void dq_block(const Block& blk, const AttentionKernelParams& p, unsigned char* smem,
                        int block, int blocks, int group) {
  using Op = typename Mode::Op;
  const tiling::TileLayout& L = p.layout;
  const Shared<Op> s(smem, L);
  const int nqb = tiling::query_blocks(p.N), items = p.B * nqb, Dc = L.Dc;
  const int slot_stride = 2 * kRows * Dc;
  int g_first, g_count;
  tiling::group_heads(group, L.group, p.H, &g_first, &g_count);  // global head indices
  const bool grads = L.grad_total > 0 && group == 0;
  double* sums = grads ? p.partials + int64_t{block} * L.grad_total : nullptr;

  zero_shared(blk, smem, L.bytes);
  if (grads) {
    blk.threads([&](int tid) {
      for (int i = tid; i < L.grad_total; i += kThreads) sums[i] = 0.0;
    });
  }
  blk.sync();
  load_constants(blk, p, L, s, p.h0, p.Hl);
  blk.sync();

  for (int item = block; item < items; item += blocks) {
    int b, qb;
    tiling::query_item(item, p.B, nqb, &b, &qb);
    const TilePos rows = tile_pos(p, b, qb, 0);
    blk.threads([&](int tid) {
      load_row_stats(tid, p, s.row_lse, s.row_di, rows);
      for (int idx = tid; idx < g_count * kRows * Dc; idx += kThreads) s.acc[idx] = 0.0f;
    });
    blk.sync();
    const int tiles = tiling::key_tiles_seen(qb, p.N, p.M);
    for (int kb = 0; kb < tiles; ++kb) {
      const TilePos tp = tile_pos(p, b, qb, kb);
      tile_logits<Mode>(blk, p, L, s, tp, 0, p.Hl);
      tile_backward<Mode>(blk, p, L, s, tp, grads, false, g_first, g_count);
      if (grads) tile_parameter_gradients(blk, p, L, s, tp, sums);
      // dq += dS·K for the group's heads, stage_heads heads' key tiles at a time.
      const float* k = p.k + int64_t{b} * p.k_batch + int64_t{tp.j0} * p.k_row;
      for (int h = g_first; h < g_first + g_count; h += L.stage_heads) {
        const int n = min_int(L.stage_heads, g_first + g_count - h);
        blk.threads(
            [&](int tid) { stage_rows(tid, s.stage, Dc, 0, n, k, p.k_row, tp.keys, h, p.D); });
        blk.sync();
        tile_gemm<RowMajor, RowMajor>(
            blk, n, kRows, Dc, kRows, Operand<Op>{ds_operand<Mode>(s, h, g_first), kRows, kP},
            Operand<Op>{s.stage, Dc, slot_stride},
            Result{s.acc + (h - g_first) * kRows * Dc, Dc, kRows * Dc, false}, true);
        blk.sync();
      }
    }
    blk.threads([&](int tid) {
      for (int idx = tid; idx < g_count * kRows * p.D; idx += kThreads) {
        const int gh = idx / (kRows * p.D), e = idx % (kRows * p.D), r = e / p.D, d = e % p.D;
        if (r >= rows.rows) continue;
        p.dq[int64_t{b} * p.q_batch + int64_t{rows.t0 + r} * p.q_row + int64_t{g_first + gh} * p.D +
             d] = s.acc[(gh * kRows + r) * Dc + d] * p.scale;
      }
    });
    blk.sync();
  }
}

// Block `item` (sequence, key tile) of the dk/dv kernel, for the group `group` of all H heads:
// dk of the group's heads, dv of those among them that are local.
template <class Mode, class Block>
DAPE_TILE void dkdv_block(const Block& blk, const AttentionKernelParams& p, unsigned char* smem,
                          int item, int group) {
  using Op = typename Mode::Op;
  const tiling::TileLayout& L = p.layout;
  const Shared<Op> s(smem, L);
  const int nqb = tiling::query_blocks(p.N), Dc = L.Dc, slot_stride = 2 * kRows * Dc;
  int b, kb, g_first, g_count;
  tiling::key_item(item, p.B, &b, &kb);
  tiling::group_heads(group, L.group, p.H, &g_first, &g_count);  // global head indices
  const int g_end = g_first + g_count;
  // The group's local heads [l_first, l_end) (empty when l_first >= l_end).
  const int l_first = max_int(g_first, p.h0), l_end = min_int(g_end, p.h0 + p.Hl);
  auto p_operand = [&](int h) -> const Op* {  // P of local head h (global index)
    if constexpr (Mode::kOwnOperands)
      return s.pop + (h - g_first) * kP;
    else
      return s.a32 + (h - p.h0) * kP;
  };

  zero_shared(blk, smem, L.bytes);
  blk.sync();
  load_constants(blk, p, L, s, p.h0, p.Hl);
  blk.sync();

  for (int qb = tiling::first_query_block(kb, p.N, p.M); qb < nqb; ++qb) {
    const TilePos tp = tile_pos(p, b, qb, kb);
    blk.threads([&](int tid) { load_row_stats(tid, p, s.row_lse, s.row_di, tp); });
    blk.sync();
    tile_logits<Mode>(blk, p, L, s, tp, 0, p.Hl);
    tile_backward<Mode>(blk, p, L, s, tp, false, true, g_first, g_count);
    // dk += dSᵀ·Q and dv += Pᵀ·dO for the group's heads, stage_heads heads at a time: q rows in
    // slot 0, dout rows (local heads) in slot 1.
    const float* q = p.q + int64_t{b} * p.q_batch + int64_t{tp.t0} * p.q_row;
    const int64_t out_row = int64_t{p.Hl} * p.D;
    const float* dout = p.dout + (int64_t{b} * p.N + tp.t0) * out_row;
    for (int h = g_first; h < g_end; h += L.stage_heads) {
      const int n = min_int(L.stage_heads, g_end - h);
      const int v_first = max_int(h, l_first), v_end = min_int(h + n, l_end);  // local ones
      blk.threads([&](int tid) {
        stage_rows(tid, s.stage, Dc, 0, n, q, p.q_row, tp.rows, h, p.D);
        if (v_first < v_end)
          stage_rows(tid, s.stage + (v_first - h) * slot_stride, Dc, 1, v_end - v_first, dout,
                     out_row, tp.rows, v_first - p.h0, p.D);
      });
      blk.sync();
      tile_gemm<ColMajor, RowMajor>(
          blk, n, kRows, Dc, kRows, Operand<Op>{ds_operand<Mode>(s, h, g_first), kRows, kP},
          Operand<Op>{s.stage, Dc, slot_stride},
          Result{s.acc + (h - g_first) * kRows * Dc, Dc, kRows * Dc, false}, true);
      if (v_first < v_end) {
        tile_gemm<ColMajor, RowMajor>(
            blk, v_end - v_first, kRows, Dc, kRows, Operand<Op>{p_operand(v_first), kRows, kP},
            Operand<Op>{s.stage + (v_first - h) * slot_stride + kRows * Dc, Dc, slot_stride},
            Result{s.acc2 + (v_first - g_first) * kRows * Dc, Dc, kRows * Dc, false}, true);
      }
      blk.sync();
    }
  }
  const TilePos keys = tile_pos(p, b, 0, kb);
  blk.threads([&](int tid) {
    for (int idx = tid; idx < g_count * kRows * p.D; idx += kThreads) {
      const int gh = idx / (kRows * p.D), e = idx % (kRows * p.D), c = e / p.D, d = e % p.D;
      if (c >= keys.keys) continue;
      const int h = g_first + gh;
      const int64_t row = int64_t{keys.j0 + c};
      p.dk[int64_t{b} * p.k_batch + row * p.k_row + int64_t{h} * p.D + d] =
          s.acc[(gh * kRows + c) * Dc + d] * p.scale;
      if (h >= l_first && h < l_end)
        p.dv[int64_t{b} * p.v_batch + row * p.v_row + int64_t{h - p.h0} * p.D + d] =
            s.acc2[(gh * kRows + c) * Dc + d];
    }
  });
}

// ---- the parameter gradients' reduction --------------------------------------------------------

// Element i of the gradient vector: the sum of the dq kernel's `blocks` partials, in block
// order, added to the parameter's gradient.
DAPE_TILE inline void reduce_gradient(const AttentionKernelParams& p, int i, int blocks) {
  const tiling::GradLayout& g = p.grad;
  double sum = 0.0;
  for (int blk = 0; blk < blocks; ++blk) sum += p.partials[int64_t{blk} * g.total + i];
  float* target = nullptr;
  auto in = [&](int offset, int n) { return offset >= 0 && i >= offset && i < offset + n; };
  if (in(g.w1, p.W * 2 * p.H))
    target = p.grad_w1 + (i - g.w1);
  else if (in(g.b1, p.W))
    target = p.grad_b1 + (i - g.b1);
  else if (in(g.w2, p.Hl * p.W))
    target = p.grad_w2 + p.h0 * p.W + (i - g.w2);
  else if (in(g.b2, p.Hl))
    target = p.grad_b2 + p.h0 + (i - g.b2);
  else if (in(g.kerple_p, p.H))
    target = p.grad_kerple_p + (i - g.kerple_p);
  else if (in(g.kerple_a, p.H))
    target = p.grad_kerple_a + (i - g.kerple_a);
  else if (in(g.fire_c, 1))
    target = p.grad_fire_c;
  else if (in(g.fire_mult, 1))
    target = p.grad_fire_mult;
  else if (in(g.fire_w1, p.G))
    target = p.grad_fire_w1 + (i - g.fire_w1);
  else if (in(g.fire_b1, p.G))
    target = p.grad_fire_b1 + (i - g.fire_b1);
  else if (in(g.fire_w2, p.H * p.G))
    target = p.grad_fire_w2 + (i - g.fire_w2);
  else if (in(g.fire_b2, p.H))
    target = p.grad_fire_b2 + (i - g.fire_b2);
  DAPE_TILE_ASSERT(target != nullptr);
  *target = static_cast<float>(static_cast<double>(*target) + sum);
}

}  // namespace dape::cuda::tile
