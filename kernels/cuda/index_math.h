/*
 * The index arithmetic of the CUDA kernels that is plain integer math: grid sizes, the split of
 * rows into chunks for fixed-order column reductions, workspace layouts, and which table row an
 * embedding token uses. Host and device functions with no CUDA headers, so the launchers, the
 * kernels and the CPU unit tests (tests/unit/cuda_index_test.cpp) share one definition.
 *
 * Everything is 64-bit: a tensor may hold more than 2³¹ elements, and products such as rows · C
 * are formed in int64_t before any division. Kernels loop grid-stride over their items, so a grid
 * is capped (a few thousand blocks fill an H200) instead of growing with the tensor.
 *
 * Determinism: a reduction's order may depend on the shape only, never on the device or on
 * pointer alignment. row_chunks() and sum_squares' block count are functions of the sizes alone.
 */
#pragma once

#include <cstdint>

#include "kernels/attention_math.h"  // DAPE_HD

namespace dape::cuda {

// Threads per block of the elementwise, row-wise and column-reduction kernels (a multiple of 32:
// the block reductions use whole warps).
constexpr int kBlockThreads = 256;
// At most this many blocks for a grid-stride loop over elements.
constexpr int kMaxGridStrideBlocks = 8192;
// At most this many blocks for the one-block-per-row kernels (rows past it loop).
constexpr int kMaxRowBlocks = 65535;
// Workspaces are carved into pieces starting at multiples of this (cudaMalloc's alignment, and
// what CUB asks of its temporary storage).
constexpr int64_t kWorkspaceAlign = 256;

DAPE_HD inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
DAPE_HD inline int64_t round_up(int64_t a, int64_t b) {
  return ceil_div(a, b) * b;
}
// An address rounded up to a multiple of `alignment`.
DAPE_HD inline uintptr_t align_up(uintptr_t address, uintptr_t alignment) {
  return (address + alignment - 1) / alignment * alignment;
}

// Blocks for a grid-stride loop over `items` items with `threads` per block: one item per thread
// where that takes at most max_blocks, else max_blocks; at least 1 (launchers skip empty work).
DAPE_HD inline int grid_blocks(int64_t items, int threads, int max_blocks) {
  const int64_t needed = ceil_div(items, threads);
  if (needed < 1) return 1;
  return needed > max_blocks ? max_blocks : static_cast<int>(needed);
}

// Chunks of four consecutive elements covering n (the last one may be partial).
DAPE_HD inline int64_t chunks_of_4(int64_t n) {
  return ceil_div(n, 4);
}

// ---- fixed-order column reductions ------------------------------------------------------------

// Rows split into consecutive chunks: chunk k holds rows [k · rows_per_chunk, min(rows,
// (k + 1) · rows_per_chunk)), every chunk non-empty. A column reduction sums each column over a
// chunk's rows in order, then the chunks' partial sums in chunk order. Up to kMaxRowChunks
// chunks, so that the rows × columns work spreads over the GPU even for a few hundred columns;
// rows_per_chunk >= kMinRowsPerChunk (when there are that many rows), so that the partials stay
// a small fraction of the input.
constexpr int64_t kMinRowsPerChunk = 16;
constexpr int64_t kMaxRowChunks = 256;

struct RowChunks {
  int64_t count = 0;
  int64_t rows_per_chunk = 1;
};

DAPE_HD inline RowChunks row_chunks(int64_t rows) {
  RowChunks c;
  if (rows <= 0) return c;
  int64_t count = rows / kMinRowsPerChunk;
  if (count < 1) count = 1;
  if (count > kMaxRowChunks) count = kMaxRowChunks;
  c.rows_per_chunk = ceil_div(rows, count);
  c.count = ceil_div(rows, c.rows_per_chunk);  // <= count; drops chunks the rounding left empty
  return c;
}

// Float workspaces (the launchers' float* parameters) that hold doubles: the launcher rounds the
// pointer up to 8 bytes, so `doubles` doubles need 2 · doubles floats plus one of slack.
DAPE_HD inline int64_t floats_for_doubles(int64_t doubles) {
  return 2 * doubles + 1;
}

// ---- embedding ----------------------------------------------------------------------------------

// The row of the (possibly sliced) table that `token` reads, or -1 when it has none: with
// vocab_begin < 0 the table is whole and holds ids [0, wte_rows); with vocab_begin >= 0 it holds
// ids [vocab_begin, vocab_begin + wte_rows).
DAPE_HD inline int64_t embedding_table_row(int32_t token, int64_t vocab_begin, int64_t wte_rows) {
  const int64_t row = static_cast<int64_t>(token) - (vocab_begin < 0 ? 0 : vocab_begin);
  return row >= 0 && row < wte_rows ? row : -1;
}

// embedding_backward sorts the rows by table row (radix sort of (key, row index) pairs, stable),
// so that each table row's gradient is one sum over its rows in increasing order. A row with no
// table row gets the key wte_rows, which sorts after every real one.
DAPE_HD inline uint32_t embedding_sort_key(int64_t table_row, int64_t wte_rows) {
  return static_cast<uint32_t>(table_row >= 0 ? table_row : wte_rows);
}

// Byte offsets into embedding_backward's workspace, from a kWorkspaceAlign-aligned base: the
// keys and row indices (int32 each) before and after sorting, then the sort's temporary storage.
struct EmbeddingSortLayout {
  int64_t keys_in = 0, keys_out = 0, rows_in = 0, rows_out = 0, sort_temp = 0;
  int64_t total = 0;  // bytes from the base to the end of the sort's storage
};

DAPE_HD inline EmbeddingSortLayout embedding_sort_layout(int64_t rows, int64_t sort_temp_bytes) {
  const int64_t array = round_up(rows * 4, kWorkspaceAlign);
  EmbeddingSortLayout l;
  l.keys_in = 0;
  l.keys_out = array;
  l.rows_in = 2 * array;
  l.rows_out = 3 * array;
  l.sort_temp = 4 * array;
  l.total = l.sort_temp + round_up(sort_temp_bytes, kWorkspaceAlign);
  return l;
}

// Workspace bytes for embedding_backward: the layout plus the slack for aligning the base.
DAPE_HD inline int64_t embedding_workspace_bytes(int64_t rows, int64_t sort_temp_bytes) {
  return embedding_sort_layout(rows, sort_temp_bytes).total + kWorkspaceAlign;
}

}  // namespace dape::cuda
