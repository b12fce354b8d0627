// The integer index math of the CUDA kernels (kernels/cuda/index_math.h), checked on the CPU:
// grid sizes, the row chunks of the fixed-order column reductions, workspace sizes against every
// misalignment of the base pointer, and the embedding's table-row mapping and sort keys.
#include "kernels/cuda/index_math.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

namespace dape::cuda {
namespace {

TEST(CudaIndexMath, GridBlocksCoverTheItemsUpToTheCap) {
  EXPECT_EQ(grid_blocks(0, 256, 8), 1);
  EXPECT_EQ(grid_blocks(1, 256, 8), 1);
  EXPECT_EQ(grid_blocks(256, 256, 8), 1);
  EXPECT_EQ(grid_blocks(257, 256, 8), 2);
  EXPECT_EQ(grid_blocks(8 * 256, 256, 8), 8);
  EXPECT_EQ(grid_blocks(8 * 256 + 1, 256, 8), 8);
  // 64-bit item counts (more than 2³¹ elements) do not overflow.
  EXPECT_EQ(grid_blocks(int64_t{3} << 40, kBlockThreads, kMaxGridStrideBlocks),
            kMaxGridStrideBlocks);
  for (int64_t items = 1; items < 5000; items += 37) {
    const int b = grid_blocks(items, 64, 16);
    EXPECT_GE(int64_t{b} * 64, std::min<int64_t>(items, 16 * 64)) << items;
    EXPECT_LT(int64_t{b - 1} * 64, items) << items;  // no block without an item
  }
}

TEST(CudaIndexMath, ChunksOfFour) {
  EXPECT_EQ(chunks_of_4(0), 0);
  EXPECT_EQ(chunks_of_4(1), 1);
  EXPECT_EQ(chunks_of_4(4), 1);
  EXPECT_EQ(chunks_of_4(5), 2);
  EXPECT_EQ(chunks_of_4((int64_t{1} << 33) + 3), (int64_t{1} << 31) + 1);
}

// Every row in exactly one chunk, every chunk non-empty, within the limits.
void check_row_chunks(int64_t rows) {
  const RowChunks c = row_chunks(rows);
  ASSERT_GE(c.count, 1) << rows;
  EXPECT_LE(c.count, kMaxRowChunks) << rows;
  EXPECT_GE(c.rows_per_chunk, std::min(rows, kMinRowsPerChunk)) << rows;
  EXPECT_LT((c.count - 1) * c.rows_per_chunk, rows) << rows;  // the last chunk starts inside
  EXPECT_GE(c.count * c.rows_per_chunk, rows) << rows;        // and reaches the end
}

TEST(CudaIndexMath, RowChunksPartitionTheRows) {
  EXPECT_EQ(row_chunks(0).count, 0);
  for (int64_t rows = 1; rows <= 5000; ++rows) check_row_chunks(rows);
  for (int64_t rows : {int64_t{16384}, int64_t{65536} + 7, int64_t{1} << 31, int64_t{1} << 40})
    check_row_chunks(rows);
  EXPECT_EQ(row_chunks(16384).count, kMaxRowChunks);
  EXPECT_EQ(row_chunks(16384).rows_per_chunk, 64);
  EXPECT_EQ(row_chunks(31).count, 1);
  EXPECT_EQ(row_chunks(32).count, 2);
}

TEST(CudaIndexMath, DoublesFitInTheFloatWorkspaceAtAnyFloatAlignment) {
  for (int64_t doubles : {0, 1, 2, 7, 1000})
    for (uintptr_t base = 4096; base < 4096 + 64; base += 4) {  // float-aligned starts
      const uintptr_t first = align_up(base, 8);
      EXPECT_EQ(first % 8, 0u);
      EXPECT_LE(first + 8 * static_cast<uintptr_t>(doubles),
                base + 4 * static_cast<uintptr_t>(floats_for_doubles(doubles)))
          << doubles << " doubles from " << base;
    }
}

TEST(CudaIndexMath, EmbeddingTableRow) {
  // The whole table: ids [0, V).
  EXPECT_EQ(embedding_table_row(0, -1, 10), 0);
  EXPECT_EQ(embedding_table_row(9, -1, 10), 9);
  EXPECT_EQ(embedding_table_row(10, -1, 10), -1);
  EXPECT_EQ(embedding_table_row(-1, -1, 10), -1);
  EXPECT_EQ(embedding_table_row(INT32_MIN, -1, 10), -1);
  // A slice holding ids [100, 150).
  EXPECT_EQ(embedding_table_row(100, 100, 50), 0);
  EXPECT_EQ(embedding_table_row(149, 100, 50), 49);
  EXPECT_EQ(embedding_table_row(150, 100, 50), -1);
  EXPECT_EQ(embedding_table_row(99, 100, 50), -1);
  EXPECT_EQ(embedding_table_row(-5, 100, 50), -1);
  EXPECT_EQ(embedding_table_row(0, 0, 50), 0);
  // The last slice of the int32 id range.
  EXPECT_EQ(embedding_table_row(INT32_MAX, int64_t{INT32_MAX} - 3, 4), 3);
  // An empty slice holds nothing.
  EXPECT_EQ(embedding_table_row(7, 7, 0), -1);
}

TEST(CudaIndexMath, EmbeddingSortKeysPutRowlessTokensLast) {
  const int64_t V = 50304;
  EXPECT_EQ(embedding_sort_key(0, V), 0u);
  EXPECT_EQ(embedding_sort_key(V - 1, V), static_cast<uint32_t>(V - 1));
  EXPECT_EQ(embedding_sort_key(-1, V), static_cast<uint32_t>(V));
  const int64_t big = int64_t{INT32_MAX} - 1;  // the largest table embedding_backward accepts
  EXPECT_GT(embedding_sort_key(-1, big), embedding_sort_key(big - 1, big));
}

TEST(CudaIndexMath, EmbeddingWorkspaceHoldsItsLayoutAtAnyBase) {
  for (int64_t rows : {1, 63, 64, 65, 1000, 16384})
    for (int64_t temp : {0, 1, 255, 256, 100000}) {
      const EmbeddingSortLayout l = embedding_sort_layout(rows, temp);
      const std::vector<int64_t> arrays = {l.keys_in, l.keys_out, l.rows_in, l.rows_out};
      for (size_t i = 0; i < arrays.size(); ++i) {
        EXPECT_EQ(arrays[i] % kWorkspaceAlign, 0);
        const int64_t end = arrays[i] + 4 * rows;  // int32 / uint32 per row
        const int64_t next = i + 1 < arrays.size() ? arrays[i + 1] : l.sort_temp;
        EXPECT_LE(end, next) << rows << " rows, array " << i;
      }
      EXPECT_EQ(l.sort_temp % kWorkspaceAlign, 0);
      EXPECT_GE(l.total, l.sort_temp + temp);
      const int64_t bytes = embedding_workspace_bytes(rows, temp);
      for (uintptr_t base = 1 << 20; base < (1 << 20) + kWorkspaceAlign; ++base) {
        const uintptr_t aligned = align_up(base, kWorkspaceAlign);
        ASSERT_LE(aligned + static_cast<uintptr_t>(l.total), base + static_cast<uintptr_t>(bytes))
            << rows << " rows from base " << base;
      }
    }
}

}  // namespace
}  // namespace dape::cuda
