/*
 * The index math of the fused attention on CUDA, kept free of CUDA so that it is unit-tested on
 * the host (tests/unit/attention_tiling_test.cpp) and shared by the kernels and their launchers.
 *
 * Tiles. A sequence's N query rows form query blocks of kBlockQueries rows, its M = kv_len keys
 * key tiles of kBlockKeys keys; query row t sits at position O + t (O = M − N) and sees the keys
 * j ≤ O + t. A (query block, key tile) pair is
 *   masked   when no row of the block sees any key of the tile (it is skipped: f is pointwise in
 *            (i, j), so skipping is exact),
 *   full     when every row sees every key of the tile,
 *   partial  otherwise (the diagonal, where each pair is masked or not on its own).
 * The forward and the dq kernel walk, for each query block, the key tiles [0, key_tiles_seen);
 * the dk/dv kernel walks, for each key tile, the query blocks [first_query_block, query_blocks).
 * Both visit exactly the pairs that are not masked.
 *
 * Shared memory. One thread block holds one (query block, key tile) tile of every head at a time.
 * TileLayout places its buffers in dynamic shared memory (byte offsets, 128-byte aligned); the
 * planner picks, for the device's limit, how many heads' accumulators one block keeps (more
 * head groups mean the tile is recomputed once per group), how many pairs f's hidden layer
 * covers at once, and how many heads' operand tiles are staged at once. Every matrix the tile
 * GEMMs touch has dimensions padded to multiples of 16 (the tensor-core fragment) and zero in
 * the padding.
 *
 * Parameter gradients. The dq kernel's blocks each sum their share of the learned parameters'
 * gradients into a vector of doubles laid out by GradLayout (their slot of a workspace); a
 * reduction adds the blocks' vectors in block order.
 */
#pragma once

#include <cstdint>

#include "kernels/attention_math.h"  // DAPE_HD

namespace dape::attention_tiling {

constexpr int kBlockQueries = 16;  // query rows per tile
constexpr int kBlockKeys = 16;     // keys per tile
constexpr int kTilePairs = kBlockQueries * kBlockKeys;
// Operand tiles of query rows and of keys share one staging layout ([16][Dc] per head).
static_assert(kBlockQueries == kBlockKeys && kBlockQueries == 16);
constexpr int kThreads = 256;  // threads per block
constexpr int kWarps = kThreads / 32;
constexpr int kFragment = 16;  // the tensor-core fragment's m = n = k

// Limits of the CUDA kernels (check_attention_arguments refuses anything larger).
constexpr int kMaxHeads = 32;
constexpr int kMaxHeadDim = 128;
constexpr int kMaxWidth = 64;      // DAPE's f
constexpr int kMaxFireWidth = 64;  // FIRE's g
// The dq kernel runs at most this many blocks (each loops over several query blocks), which
// bounds the parameter-gradient workspace; the count depends on the shape only, so the sums are
// the same on every device.
constexpr int kMaxGradientBlocks = 1024;

DAPE_HD constexpr int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}
DAPE_HD constexpr int round_up(int a, int m) {
  return ceil_div(a, m) * m;
}
DAPE_HD constexpr int min_int(int a, int b) {
  return a < b ? a : b;
}
DAPE_HD constexpr int max_int(int a, int b) {
  return a > b ? a : b;
}

// ---- tiles of one sequence: N query rows, M keys, query row t at position M − N + t ----------

DAPE_HD inline int query_blocks(int N) {
  return ceil_div(N, kBlockQueries);
}
DAPE_HD inline int key_tiles(int M) {
  return ceil_div(M, kBlockKeys);
}
// Rows of query block qb (kBlockQueries except in the last block).
DAPE_HD inline int rows_in_block(int qb, int N) {
  return min_int(kBlockQueries, N - qb * kBlockQueries);
}
// Keys of key tile kb (kBlockKeys except in the last tile).
DAPE_HD inline int keys_in_tile(int kb, int M) {
  return min_int(kBlockKeys, M - kb * kBlockKeys);
}
// How many of the `cols` keys from j0 the query at position `pos` sees: the keys j0 … pos.
DAPE_HD inline int visible_keys(int pos, int j0, int cols) {
  return max_int(0, min_int(cols, pos - j0 + 1));
}
// Whether query row t (of N) sees key j (of M).
DAPE_HD inline bool pair_visible(int t, int j, int N, int M) {
  return t >= 0 && t < N && j >= 0 && j < M && j <= M - N + t;
}
// Query block qb sees the key tiles [0, key_tiles_seen): up to the tile of its last row's
// position.
DAPE_HD inline int key_tiles_seen(int qb, int N, int M) {
  const int last_row = qb * kBlockQueries + rows_in_block(qb, N) - 1;
  return (M - N + last_row) / kBlockKeys + 1;
}
// Key tile kb is seen by the query blocks [first_query_block, query_blocks): from the block of
// the first row whose position reaches the tile's first key.
DAPE_HD inline int first_query_block(int kb, int N, int M) {
  const int first_row = max_int(0, kb * kBlockKeys - (M - N));
  return first_row / kBlockQueries;
}

enum class TileCoverage : int { masked, partial, full };

DAPE_HD inline TileCoverage tile_coverage(int qb, int kb, int N, int M) {
  const int O = M - N;
  const int first_pos = O + qb * kBlockQueries;
  const int last_pos = first_pos + rows_in_block(qb, N) - 1;
  const int j0 = kb * kBlockKeys, j_last = j0 + keys_in_tile(kb, M) - 1;
  if (j0 > last_pos) return TileCoverage::masked;
  if (j_last <= first_pos) return TileCoverage::full;
  return TileCoverage::partial;
}

// ---- work items: (sequence, block) pairs, the longest first ---------------------------------

// Forward and dq: item → (sequence b, query block qb); later query blocks see more keys.
DAPE_HD inline void query_item(int item, int B, int nqb, int* b, int* qb) {
  *b = item % B;
  *qb = nqb - 1 - item / B;
}
// dk/dv: item → (sequence b, key tile kb); earlier key tiles are seen by more query blocks.
DAPE_HD inline void key_item(int item, int B, int* b, int* kb) {
  *b = item % B;
  *kb = item / B;
}
// Blocks of the dq kernel for `items` work items; block x takes items x, x + blocks, ...
DAPE_HD inline int gradient_blocks(int items) {
  return min_int(items, kMaxGradientBlocks);
}
// The heads [first, first + count) of group g when `total` heads go `per_group` to a group.
DAPE_HD inline void group_heads(int g, int per_group, int total, int* first, int* count) {
  *first = g * per_group;
  *count = min_int(per_group, total - *first);
}

// ---- parameter gradients: one block's partial sums, as a flat vector of doubles --------------

struct GradLayout {
  // Offsets of each gradient in the vector; -1 when the call has no such parameter. f's w2 and
  // b2: the local heads' rows only ([Hl, W] and [Hl]).
  int w1 = -1, b1 = -1, w2 = -1, b2 = -1;
  int kerple_p = -1, kerple_a = -1;
  int fire_c = -1, fire_mult = -1, fire_w1 = -1, fire_b1 = -1, fire_w2 = -1, fire_b2 = -1;
  int total = 0;
};

inline GradLayout make_grad_layout(bool dape, int W, int H, int Hl, bool kerple, bool fire, int G) {
  GradLayout g;
  auto take = [&](int n) {
    const int at = g.total;
    g.total += n;
    return at;
  };
  if (dape) {
    g.w1 = take(W * 2 * H);
    g.b1 = take(W);
    g.w2 = take(Hl * W);
    g.b2 = take(Hl);
  }
  if (kerple) {
    g.kerple_p = take(H);
    g.kerple_a = take(H);
  }
  if (fire) {
    g.fire_c = take(1);
    g.fire_mult = take(1);
    g.fire_w1 = take(G);
    g.fire_b1 = take(G);
    g.fire_w2 = take(H * G);
    g.fire_b2 = take(H);
  }
  return g;
}

// ---- shared-memory layout of one kernel's block -----------------------------------------------

// The tile's sums over pairs for Kerple's p and a run in kKerpleParts parts (rows of the tile),
// for FIRE's g's first layer in kFireParts parts, then over the parts.
constexpr int kKerpleParts = kBlockQueries;
constexpr int kFireParts = 4;

enum class TileKernel : int { forward, dq, dkdv };

// What a layout depends on.
struct TileDims {
  int H = 0;   // every head
  int Hl = 0;  // local heads
  int D = 0;
  int W = 0;  // f's width; 0 without DAPE
  int G = 0;  // g's width; 0 unless FIRE
  bool kerple = false;
  bool fire = false;
  bool bf16 = false;      // operand buffers of their own (else the float buffers themselves)
  int operand_bytes = 0;  // bytes of an operand: 0 for the mode's (bf16 2, fp32 4)
};

// P = kTilePairs pairs per tile, indexed p = row · kBlockKeys + key. Buffers (element type; size):
//   x32    float [Hp2][P]   f's input X = [S of every head; B of every head], later its
//                           gradient [dS; dB]; rows 2H … Hp2 stay zero
//   xop    op    [Hp2][chunk]  the chunk's columns of X as a GEMM operand (bf16; fp32: x32)
//   a32    float [Ap][P]    logits A, then P, of the A-set heads (forward: the group's local
//                           heads; backward: every local head); rows past them stay zero
//   pop    op    [group][P] P as a GEMM operand (forward: the group; dkdv: the group's heads)
//   da32   float [Ap][P]    dP, then dA (backward)
//   daop   op    [Ap][chunk]   the chunk's columns of dA as a GEMM operand (bf16; fp32: da32)
//   z32    float [chunk][Wp] f's hidden pre-activation (bf16) or activation (float) of `chunk`
//                           pairs
//   actop  op    [chunk][Wp] the activation as a GEMM operand
//   dact32 float [chunk][Wp] ∂/∂activation, then ∂/∂pre-activation (backward)
//   dzop   op    [chunk][Wp] ∂/∂pre-activation as a GEMM operand
//   dsop   op    [group][P] dS of the group's heads as a GEMM operand (bf16 only)
//   stage  op    [stage_heads][2][16][Dc]  q/k/v/dout tiles of a few heads
//   acc    float [group][16][Dc]  forward: O; dq: dq; dkdv: dk
//   acc2   float [group][16][Dc]  dkdv: dv
//   row_*  float [group or Hl][16]  running max, sum and rescale factor (forward); Di and lse
//   w1, b1, w2, b2             f's weights (w1 [Wp][Hp2], w2 [Ap][Wp]: the A-set's rows)
//   head_p0, head_p1 float [H] ALiBi's slopes; Kerple's clamped p and a
//   fire_u, fire_dc, fire_dm float [P]  FIRE's u and ∂L/∂u·∂u/∂c, ∂L/∂u·∂u/∂L_mult per pair
//                              (g's weights are read from global memory, where all threads
//                              read the same ones)
//   reduce, dw1, dw2, db1 float: one tile's parameter gradients (dq kernel); the block's sums
//                              over its tiles (doubles) accumulate in its slot of the partials
//                              workspace in global memory
struct TileLayout {
  int kernel = 0;   // TileKernel
  int Dc = 0;       // D padded to 16
  int Hp2 = 0;      // 2H padded to 16
  int Wp = 0;       // W padded to 16 (0 without DAPE)
  int a_heads = 0;  // heads of the A-set
  int Ap = 0;       // a_heads padded to 16
  int group = 0;    // heads per group (accumulators)
  int groups = 0;   // groups (grid.y)
  int chunk = 0;    // pairs per pass of f's hidden layer (0 without DAPE)
  int stage_heads = 0;
  int grad_total = 0;  // the block's parameter-gradient sums (0: none in this kernel)
  bool bf16 = false;
  int x32 = -1, xop = -1, a32 = -1, pop = -1, da32 = -1, daop = -1;
  int z32 = -1, actop = -1, dact32 = -1, dzop = -1, dsop = -1, stage = -1, acc = -1, acc2 = -1;
  int row_max = -1, row_sum = -1, row_scale = -1, row_di = -1, row_lse = -1;
  int w1 = -1, b1 = -1, w2 = -1, b2 = -1, head_p0 = -1, head_p1 = -1;
  int fire_u = -1, fire_dc = -1, fire_dm = -1;
  int reduce = -1, dw1 = -1, dw2 = -1, db1 = -1;
  int reduce_size = 0;  // floats in `reduce`
  int64_t bytes = 0;
};

// The layout of `kernel` with `group` heads per group, f's hidden layer `chunk` pairs at a time,
// and `stage_heads` heads' operand tiles at once. `grad_total` > 0 (dq kernel): the block also
// sums the parameter gradients.
inline TileLayout make_tile_layout(TileKernel kernel, const TileDims& d, int group, int chunk,
                                   int stage_heads, int grad_total) {
  TileLayout L;
  const bool dape = d.W > 0, backward = kernel != TileKernel::forward;
  const int P = kTilePairs, op = d.operand_bytes > 0 ? d.operand_bytes : (d.bf16 ? 2 : 4);
  const int group_total = kernel == TileKernel::forward ? d.Hl : d.H;  // heads split in groups
  L.kernel = static_cast<int>(kernel);
  L.bf16 = d.bf16;
  L.Dc = round_up(d.D, kFragment);
  L.Hp2 = round_up(2 * d.H, kFragment);
  L.Wp = dape ? round_up(d.W, kFragment) : 0;
  L.group = group;
  L.groups = ceil_div(group_total, group);
  L.a_heads = backward ? d.Hl : group;
  L.Ap = round_up(L.a_heads, kFragment);
  L.chunk = dape ? chunk : 0;
  L.stage_heads = stage_heads;
  L.grad_total = kernel == TileKernel::dq ? grad_total : 0;
  int64_t at = 0;
  auto take = [&](int64_t elements, int element_bytes) {
    const int offset = static_cast<int>(at);
    at += (elements * element_bytes + 127) / 128 * 128;
    return offset;
  };
  L.x32 = take(int64_t{L.Hp2} * P, 4);
  L.a32 = take(int64_t{L.Ap} * P, 4);
  if (kernel != TileKernel::dq) L.pop = d.bf16 ? take(int64_t{group} * P, op) : L.a32;
  if (backward) L.da32 = take(int64_t{L.Ap} * P, 4);
  if (dape) {
    L.xop = d.bf16 ? take(int64_t{L.Hp2} * chunk, op) : L.x32;
    if (backward) L.daop = d.bf16 ? take(int64_t{L.Ap} * chunk, op) : L.da32;
    L.z32 = take(int64_t{chunk} * L.Wp, 4);
    L.actop = d.bf16 ? take(int64_t{chunk} * L.Wp, op) : L.z32;
    if (backward) {
      L.dact32 = take(int64_t{chunk} * L.Wp, 4);
      L.dzop = d.bf16 ? take(int64_t{chunk} * L.Wp, op) : L.dact32;
    }
  }
  if (backward && d.bf16) L.dsop = take(int64_t{group} * P, op);
  L.stage = take(int64_t{stage_heads} * 2 * kBlockQueries * L.Dc, op);
  L.acc = take(int64_t{group} * kBlockQueries * L.Dc, 4);
  if (kernel == TileKernel::dkdv) L.acc2 = take(int64_t{group} * kBlockKeys * L.Dc, 4);
  if (kernel == TileKernel::forward) {
    L.row_max = take(group * kBlockQueries, 4);
    L.row_sum = take(group * kBlockQueries, 4);
    L.row_scale = take(group * kBlockQueries, 4);
  } else {
    L.row_di = take(d.Hl * kBlockQueries, 4);
    L.row_lse = take(d.Hl * kBlockQueries, 4);
  }
  if (dape) {
    L.w1 = take(int64_t{L.Wp} * L.Hp2, op);
    L.b1 = take(L.Wp, 4);
    L.w2 = take(int64_t{L.Ap} * L.Wp, op);
    L.b2 = take(L.Ap, 4);
  }
  L.head_p0 = take(d.H, 4);
  L.head_p1 = take(d.H, 4);
  if (L.grad_total > 0) {
    if (dape) {
      L.dw1 = take(int64_t{L.Wp} * L.Hp2, 4);
      L.dw2 = take(int64_t{L.Ap} * L.Wp, 4);
      L.db1 = take(L.Wp, 4);
    }
    if (d.fire) {
      L.fire_u = take(P, 4);
      L.fire_dc = take(P, 4);
      L.fire_dm = take(P, 4);
    }
    L.reduce_size =
        max_int(d.kerple ? 2 * d.H * kKerpleParts : 0, d.fire ? 2 * d.G * kFireParts : 0);
    if (L.reduce_size > 0) L.reduce = take(L.reduce_size, 4);
  }
  L.bytes = at;
  return L;
}

// The layout for the device's limit: the fewest head groups, then the candidates below in order
// (several heads staged at once keep the tensor cores' warps busy; f's hidden layer over many
// pairs at once saves passes and, in backward, recomputing it). False when nothing fits.
inline bool plan_tile_layout(TileKernel kernel, const TileDims& d, int grad_total,
                             int64_t smem_limit, TileLayout* out) {
  struct Candidate {
    int stage_heads, chunk;
  };
  static constexpr Candidate kCandidates[] = {{8, 256}, {8, 128}, {4, 256}, {4, 128}, {8, 64},
                                              {4, 64},  {2, 64},  {2, 32},  {1, 32},  {1, 16}};
  const int group_total = kernel == TileKernel::forward ? d.Hl : d.H;
  for (int groups = 1; groups <= group_total; ++groups) {
    const int group = ceil_div(group_total, groups);
    if (ceil_div(group_total, group) != groups) continue;  // the same split as fewer groups
    for (const Candidate& c : kCandidates) {
      const int stage_heads = min_int(c.stage_heads, d.H);
      const TileLayout L = make_tile_layout(kernel, d, group, c.chunk, stage_heads, grad_total);
      if (L.bytes <= smem_limit) {
        *out = L;
        return true;
      }
    }
  }
  return false;
}

}  // namespace dape::attention_tiling
