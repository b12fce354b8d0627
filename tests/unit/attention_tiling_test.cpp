// The CUDA fused attention's index math (kernels/attention_tiling.h) against brute force over
// every (query row, key) pair: which tiles are masked, partial or full; that the forward/dq walk
// (key tiles per query block) and the dk/dv walk (query blocks per key tile) each cover every
// visible pair exactly once and nothing else; the work items, head groups and gradient blocks;
// and the shared-memory layouts (aligned, disjoint, within the limit the planner was given).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/attention_tiling.h"

namespace dape {
namespace {

namespace tiling = dape::attention_tiling;
using tiling::kBlockKeys;
using tiling::kBlockQueries;
using tiling::TileCoverage;

// (N, M) pairs: lengths around the tile sizes, with and without keys beyond the queries.
std::vector<std::pair<int, int>> shapes() {
  std::vector<std::pair<int, int>> s;
  for (int N : {1, 2, 15, 16, 17, 31, 32, 33, 47, 70})
    for (int extra : {0, 1, 15, 16, 17, 40}) s.emplace_back(N, N + extra);
  return s;
}

TEST(AttentionTiling, VisibilityIsTheCausalMaskWithQueriesLast) {
  for (auto [N, M] : shapes())
    for (int t = 0; t < N; ++t)
      for (int j = 0; j < M; ++j) {
        const bool expected = j <= M - N + t;  // query t sits at position M − N + t
        EXPECT_EQ(tiling::pair_visible(t, j, N, M), expected) << N << " " << M;
        const int kb = j / kBlockKeys, j0 = kb * kBlockKeys;
        const int n = tiling::visible_keys(M - N + t, j0, tiling::keys_in_tile(kb, M));
        EXPECT_EQ(j - j0 < n, expected) << "visible_keys " << N << " " << M << " t " << t;
      }
}

TEST(AttentionTiling, TileCoverageMatchesBruteForce) {
  int masked = 0, partial = 0, full = 0;
  for (auto [N, M] : shapes()) {
    const int nqb = tiling::query_blocks(N), nkb = tiling::key_tiles(M);
    EXPECT_EQ(nqb, (N + kBlockQueries - 1) / kBlockQueries);
    EXPECT_EQ(nkb, (M + kBlockKeys - 1) / kBlockKeys);
    for (int qb = 0; qb < nqb; ++qb)
      for (int kb = 0; kb < nkb; ++kb) {
        int pairs = 0, seen = 0;
        for (int t = qb * kBlockQueries; t < std::min(N, (qb + 1) * kBlockQueries); ++t)
          for (int j = kb * kBlockKeys; j < std::min(M, (kb + 1) * kBlockKeys); ++j) {
            ++pairs;
            seen += tiling::pair_visible(t, j, N, M);
          }
        const TileCoverage expected = seen == 0       ? TileCoverage::masked
                                      : seen == pairs ? TileCoverage::full
                                                      : TileCoverage::partial;
        EXPECT_EQ(tiling::tile_coverage(qb, kb, N, M), expected)
            << "N " << N << " M " << M << " qb " << qb << " kb " << kb;
        masked += expected == TileCoverage::masked;
        partial += expected == TileCoverage::partial;
        full += expected == TileCoverage::full;
        // Rows and keys of the tile.
        EXPECT_EQ(tiling::rows_in_block(qb, N), std::min(N, (qb + 1) * kBlockQueries) - qb * 16);
        EXPECT_EQ(tiling::keys_in_tile(kb, M), std::min(M, (kb + 1) * kBlockKeys) - kb * 16);
      }
  }
  // The shapes exercise all three kinds.
  EXPECT_GT(masked, 0);
  EXPECT_GT(partial, 0);
  EXPECT_GT(full, 0);
}

TEST(AttentionTiling, WalksSkipExactlyTheMaskedTiles) {
  for (auto [N, M] : shapes()) {
    const int nqb = tiling::query_blocks(N), nkb = tiling::key_tiles(M);
    for (int qb = 0; qb < nqb; ++qb) {
      const int seen = tiling::key_tiles_seen(qb, N, M);
      ASSERT_GE(seen, 1);
      ASSERT_LE(seen, nkb);
      for (int kb = 0; kb < nkb; ++kb)
        EXPECT_EQ(kb < seen, tiling::tile_coverage(qb, kb, N, M) != TileCoverage::masked)
            << "N " << N << " M " << M << " qb " << qb << " kb " << kb;
    }
    for (int kb = 0; kb < nkb; ++kb) {
      const int first = tiling::first_query_block(kb, N, M);
      ASSERT_GE(first, 0);
      ASSERT_LT(first, nqb);  // every key is seen by some query (the last one sees them all)
      for (int qb = 0; qb < nqb; ++qb)
        EXPECT_EQ(qb >= first, tiling::tile_coverage(qb, kb, N, M) != TileCoverage::masked)
            << "N " << N << " M " << M << " qb " << qb << " kb " << kb;
    }
  }
}

// Each walk, with the per-pair mask inside the tile, covers every visible pair exactly once.
TEST(AttentionTiling, WalksCoverEveryVisiblePairOnce) {
  for (auto [N, M] : shapes()) {
    std::vector<int> by_queries(static_cast<size_t>(N) * M, 0), by_keys(by_queries.size(), 0);
    auto cover = [&](std::vector<int>& count, int qb, int kb) {
      const int t0 = qb * kBlockQueries, j0 = kb * kBlockKeys;
      const int rows = tiling::rows_in_block(qb, N), keys = tiling::keys_in_tile(kb, M);
      for (int r = 0; r < kBlockQueries; ++r)
        for (int c = 0; c < kBlockKeys; ++c) {
          // The kernels' in-tile mask: visible_keys of the row's position.
          const bool in_tile = r < rows && c < tiling::visible_keys(M - N + t0 + r, j0, keys);
          if (in_tile) ++count[static_cast<size_t>(t0 + r) * M + j0 + c];
        }
    };
    for (int qb = 0; qb < tiling::query_blocks(N); ++qb)
      for (int kb = 0; kb < tiling::key_tiles_seen(qb, N, M); ++kb) cover(by_queries, qb, kb);
    for (int kb = 0; kb < tiling::key_tiles(M); ++kb)
      for (int qb = tiling::first_query_block(kb, N, M); qb < tiling::query_blocks(N); ++qb)
        cover(by_keys, qb, kb);
    for (int t = 0; t < N; ++t)
      for (int j = 0; j < M; ++j) {
        const int expected = tiling::pair_visible(t, j, N, M) ? 1 : 0;
        EXPECT_EQ(by_queries[static_cast<size_t>(t) * M + j], expected)
            << "query walk N " << N << " M " << M << " t " << t << " j " << j;
        EXPECT_EQ(by_keys[static_cast<size_t>(t) * M + j], expected)
            << "key walk N " << N << " M " << M << " t " << t << " j " << j;
      }
  }
}

TEST(AttentionTiling, WorkItemsAreOneToOneAndLongestFirst) {
  for (int B : {1, 2, 3})
    for (int nqb : {1, 2, 5}) {
      std::map<std::pair<int, int>, int> seen;
      int previous_qb = nqb;
      for (int item = 0; item < B * nqb; ++item) {
        int b = -1, qb = -1;
        tiling::query_item(item, B, nqb, &b, &qb);
        ASSERT_TRUE(b >= 0 && b < B && qb >= 0 && qb < nqb);
        ++seen[{b, qb}];
        EXPECT_LE(qb, previous_qb);  // query blocks from the last (longest rows) down
        previous_qb = qb;
      }
      EXPECT_EQ(seen.size(), static_cast<size_t>(B * nqb));
      std::map<std::pair<int, int>, int> keys;
      int previous_kb = 0;
      for (int item = 0; item < B * nqb; ++item) {
        int b = -1, kb = -1;
        tiling::key_item(item, B, &b, &kb);
        ASSERT_TRUE(b >= 0 && b < B && kb >= 0 && kb < nqb);
        ++keys[{b, kb}];
        EXPECT_GE(kb, previous_kb);  // key tiles from the first (seen by the most queries) up
        previous_kb = kb;
      }
      EXPECT_EQ(keys.size(), static_cast<size_t>(B * nqb));
    }
}

TEST(AttentionTiling, GradientBlocksTakeEveryItemOnce) {
  for (int items : {1, 7, 1024, 1025, 5000}) {
    const int blocks = tiling::gradient_blocks(items);
    EXPECT_EQ(blocks, std::min(items, tiling::kMaxGradientBlocks));
    std::vector<int> taken(static_cast<size_t>(items), 0);
    for (int block = 0; block < blocks; ++block)
      for (int item = block; item < items; item += blocks) ++taken[item];
    EXPECT_TRUE(std::all_of(taken.begin(), taken.end(), [](int n) { return n == 1; })) << items;
  }
}

TEST(AttentionTiling, HeadGroupsPartitionTheHeads) {
  for (int total = 1; total <= 32; ++total)
    for (int per_group = 1; per_group <= total; ++per_group) {
      const int groups = tiling::ceil_div(total, per_group);
      int next = 0;
      for (int g = 0; g < groups; ++g) {
        int first = -1, count = -1;
        tiling::group_heads(g, per_group, total, &first, &count);
        EXPECT_EQ(first, next);
        EXPECT_GE(count, 1);
        EXPECT_LE(count, per_group);
        next = first + count;
      }
      EXPECT_EQ(next, total);
    }
}

TEST(AttentionTiling, GradLayoutPacksEveryParameter) {
  const auto g = tiling::make_grad_layout(true, 5, 4, 3, false, true, 7);
  // f: w1 [5, 8], b1 [5], w2 [3 local, 5], b2 [3]; FIRE: c, mult, w1 [7], b1 [7], w2 [4, 7], b2.
  const std::vector<std::pair<int, int>> spans = {
      {g.w1, 40},       {g.b1, 5},      {g.w2, 15},     {g.b2, 3},       {g.fire_c, 1},
      {g.fire_mult, 1}, {g.fire_w1, 7}, {g.fire_b1, 7}, {g.fire_w2, 28}, {g.fire_b2, 4}};
  int next = 0;
  for (auto [offset, n] : spans) {
    EXPECT_EQ(offset, next);
    next = offset + n;
  }
  EXPECT_EQ(g.total, next);
  EXPECT_EQ(g.kerple_p, -1);
  const auto k = tiling::make_grad_layout(false, 0, 6, 6, true, false, 0);
  EXPECT_EQ(k.kerple_p, 0);
  EXPECT_EQ(k.kerple_a, 6);
  EXPECT_EQ(k.total, 12);
  EXPECT_EQ(k.w1, -1);
}

// Every buffer of a layout (with the element counts attention_tiling.h documents) is 128-byte
// aligned, inside `bytes`, and disjoint from the others, except the fp32 operand buffers that
// are the float buffers themselves.
void expect_layout_sound(const tiling::TileLayout& L, const tiling::TileDims& d,
                         const std::string& what) {
  using tiling::TileKernel;
  const TileKernel kernel = static_cast<TileKernel>(L.kernel);
  const bool backward = kernel != TileKernel::forward, dape = d.W > 0;
  const int P = tiling::kTilePairs, op = d.bf16 ? 2 : 4;
  EXPECT_EQ(L.Dc % 16, 0);
  EXPECT_GE(L.Dc, d.D);
  EXPECT_LT(L.Dc - d.D, 16);
  EXPECT_GE(L.Hp2, 2 * d.H);
  EXPECT_EQ(L.Hp2 % 16, 0);
  EXPECT_EQ(L.a_heads, backward ? d.Hl : L.group) << what;
  EXPECT_EQ(L.Ap % 16, 0);
  if (dape) {
    EXPECT_EQ(L.Wp % 16, 0);
    EXPECT_GE(L.Wp, d.W);
    EXPECT_EQ(P % L.chunk, 0) << what;
  }
  struct Buffer {
    const char* name;
    int offset;
    int64_t bytes;
    const char* alias_of;  // fp32: the float buffer this operand buffer is
  };
  const int64_t stage = int64_t{L.stage_heads} * 2 * 16 * L.Dc * op;
  std::vector<Buffer> buffers = {{"x32", L.x32, int64_t{L.Hp2} * P * 4, nullptr},
                                 {"a32", L.a32, int64_t{L.Ap} * P * 4, nullptr},
                                 {"stage", L.stage, stage, nullptr},
                                 {"acc", L.acc, int64_t{L.group} * 16 * L.Dc * 4, nullptr},
                                 {"head_p0", L.head_p0, int64_t{d.H} * 4, nullptr},
                                 {"head_p1", L.head_p1, int64_t{d.H} * 4, nullptr}};
  if (kernel != TileKernel::dq) buffers.push_back({"pop", L.pop, int64_t{L.group} * P * op, "a32"});
  if (backward) {
    buffers.push_back({"da32", L.da32, int64_t{L.Ap} * P * 4, nullptr});
    buffers.push_back({"row_di", L.row_di, int64_t{d.Hl} * 16 * 4, nullptr});
    buffers.push_back({"row_lse", L.row_lse, int64_t{d.Hl} * 16 * 4, nullptr});
    if (d.bf16) buffers.push_back({"dsop", L.dsop, int64_t{L.group} * P * op, nullptr});
  } else {
    for (auto [name, offset] : {std::pair{"row_max", L.row_max}, std::pair{"row_sum", L.row_sum},
                                std::pair{"row_scale", L.row_scale}})
      buffers.push_back({name, offset, int64_t{L.group} * 16 * 4, nullptr});
  }
  if (kernel == TileKernel::dkdv)
    buffers.push_back({"acc2", L.acc2, int64_t{L.group} * 16 * L.Dc * 4, nullptr});
  if (dape) {
    buffers.push_back({"xop", L.xop, int64_t{L.Hp2} * L.chunk * op, "x32"});
    if (backward) buffers.push_back({"daop", L.daop, int64_t{L.Ap} * L.chunk * op, "da32"});
    buffers.push_back({"z32", L.z32, int64_t{L.chunk} * L.Wp * 4, nullptr});
    buffers.push_back({"actop", L.actop, int64_t{L.chunk} * L.Wp * op, "z32"});
    buffers.push_back({"w1", L.w1, int64_t{L.Wp} * L.Hp2 * op, nullptr});
    buffers.push_back({"b1", L.b1, int64_t{L.Wp} * 4, nullptr});
    buffers.push_back({"w2", L.w2, int64_t{L.Ap} * L.Wp * op, nullptr});
    buffers.push_back({"b2", L.b2, int64_t{L.Ap} * 4, nullptr});
    if (backward) {
      buffers.push_back({"dact32", L.dact32, int64_t{L.chunk} * L.Wp * 4, nullptr});
      buffers.push_back({"dzop", L.dzop, int64_t{L.chunk} * L.Wp * op, "dact32"});
    }
  }
  if (L.grad_total > 0) {
    if (dape) {
      buffers.push_back({"dw1", L.dw1, int64_t{L.Wp} * L.Hp2 * 4, nullptr});
      buffers.push_back({"dw2", L.dw2, int64_t{L.Ap} * L.Wp * 4, nullptr});
      buffers.push_back({"db1", L.db1, int64_t{L.Wp} * 4, nullptr});
    }
    if (d.fire) {
      for (auto [name, offset] : {std::pair{"fire_u", L.fire_u}, std::pair{"fire_dc", L.fire_dc},
                                  std::pair{"fire_dm", L.fire_dm}})
        buffers.push_back({name, offset, int64_t{P} * 4, nullptr});
    }
    if (d.kerple || d.fire) {
      EXPECT_EQ(L.reduce_size, std::max(d.kerple ? 2 * d.H * tiling::kKerpleParts : 0,
                                        d.fire ? 2 * d.G * tiling::kFireParts : 0));
      buffers.push_back({"reduce", L.reduce, int64_t{L.reduce_size} * 4, nullptr});
    }
  }
  std::map<std::string, int> offsets;
  for (const Buffer& b : buffers) offsets[b.name] = b.offset;
  std::vector<Buffer> own;  // the buffers with memory of their own
  for (const Buffer& b : buffers) {
    EXPECT_GE(b.offset, 0) << what << ": " << b.name;
    EXPECT_EQ(b.offset % 128, 0) << what << ": " << b.name;
    EXPECT_LE(b.offset + b.bytes, L.bytes) << what << ": " << b.name;
    if (b.alias_of != nullptr && !d.bf16) {
      EXPECT_EQ(b.offset, offsets.at(b.alias_of)) << what << ": " << b.name;
      continue;
    }
    own.push_back(b);
  }
  for (size_t i = 0; i < own.size(); ++i)
    for (size_t j = i + 1; j < own.size(); ++j) {
      const bool apart = own[i].offset + own[i].bytes <= own[j].offset ||
                         own[j].offset + own[j].bytes <= own[i].offset;
      EXPECT_TRUE(apart) << what << ": " << own[i].name << " and " << own[j].name << " overlap";
    }
  // Nothing else: the layout holds no unlisted offsets.
  const std::vector<int> all = {
      L.x32,       L.xop,    L.a32,     L.pop,     L.da32,   L.daop, L.z32,     L.actop,
      L.dact32,    L.dzop,   L.dsop,    L.stage,   L.acc,    L.acc2, L.row_max, L.row_sum,
      L.row_scale, L.row_di, L.row_lse, L.w1,      L.b1,     L.w2,   L.b2,      L.head_p0,
      L.head_p1,   L.fire_u, L.fire_dc, L.fire_dm, L.reduce, L.dw1,  L.dw2,     L.db1};
  int listed = 0;
  for (int offset : all) listed += offset >= 0;
  EXPECT_EQ(listed, static_cast<int>(buffers.size())) << what;
}

TEST(AttentionTiling, LayoutsAreAlignedDisjointAndWithinTheLimit) {
  using tiling::TileKernel;
  std::vector<tiling::TileDims> dims;
  for (bool bf16 : {false, true})
    for (auto [H, Hl, D, W, G, kerple] :
         {std::tuple{12, 12, 64, 32, 0, false}, std::tuple{12, 12, 64, 32, 32, false},
          std::tuple{12, 6, 64, 0, 0, true}, std::tuple{3, 3, 8, 5, 4, false},
          std::tuple{32, 8, 128, 64, 0, true}, std::tuple{32, 32, 128, 64, 64, false},
          std::tuple{1, 1, 1, 1, 0, false}, std::tuple{7, 3, 40, 20, 9, false}}) {
      tiling::TileDims d;
      d.H = H;
      d.Hl = Hl;
      d.D = D;
      d.W = W;
      d.G = G;
      d.fire = G > 0;
      d.kerple = kerple;
      d.bf16 = bf16;
      dims.push_back(d);
    }
  for (const auto& d : dims)
    for (TileKernel kernel : {TileKernel::forward, TileKernel::dq, TileKernel::dkdv})
      for (int64_t limit : {int64_t{166912}, int64_t{232448}}) {
        const int grad_total =
            tiling::make_grad_layout(d.W > 0, d.W, d.H, d.Hl, d.kerple, d.fire, d.G).total;
        tiling::TileLayout L;
        const std::string what = "kernel " + std::to_string(static_cast<int>(kernel)) + " H " +
                                 std::to_string(d.H) + " D " + std::to_string(d.D) + " W " +
                                 std::to_string(d.W) + " G " + std::to_string(d.G) +
                                 (d.bf16 ? " bf16" : " fp32") + " limit " + std::to_string(limit);
        if (!tiling::plan_tile_layout(kernel, d, grad_total, limit, &L)) {
          // Only the largest backward shapes (H = 32, D = 128, W = 64) exceed sm_80's 163 KB.
          const bool largest = d.H == 32 && d.D == 128 && d.W == 64;
          EXPECT_TRUE(limit == 166912 && kernel != TileKernel::forward && largest)
              << "nothing fits: " << what;
          continue;
        }
        EXPECT_LE(L.bytes, limit) << what;
        EXPECT_EQ(L.grad_total, kernel == TileKernel::dq ? grad_total : 0) << what;
        const int total = kernel == TileKernel::forward ? d.Hl : d.H;
        EXPECT_EQ(L.groups, tiling::ceil_div(total, L.group)) << what;
        EXPECT_LE(L.stage_heads, d.H) << what;
        expect_layout_sound(L, d, what);
        // The fewest groups: with one group fewer, no candidate would have fit.
        if (L.groups > 1) {
          const int wider = tiling::ceil_div(total, L.groups - 1);
          const tiling::TileLayout smallest =
              tiling::make_tile_layout(kernel, d, wider, 16, 1, grad_total);
          EXPECT_GT(smallest.bytes, limit) << what;
        }
      }
}

TEST(AttentionTiling, PlannerReportsWhenNothingFits) {
  tiling::TileDims d;
  d.H = 32;
  d.Hl = 32;
  d.D = 128;
  d.W = 64;
  tiling::TileLayout L;
  EXPECT_FALSE(tiling::plan_tile_layout(tiling::TileKernel::dq, d, 0, 20000, &L));
  // And the paper's shape fits sm_80 in one group for the forward.
  d.H = d.Hl = 12;
  d.D = 64;
  d.W = 32;
  ASSERT_TRUE(tiling::plan_tile_layout(tiling::TileKernel::forward, d, 0, 166912, &L));
  EXPECT_EQ(L.groups, 1);
}

}  // namespace
}  // namespace dape
