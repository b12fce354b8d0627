/*
 * Token (and learned position) embeddings on the GPU: a gather forward, a deterministic scatter
 * backward.
 *
 * Forward is a grid-stride loop over (row, chunk of four channels), float4 when C and the
 * pointers allow. A token with no row in the table gives a zero row (plus its position's wpe row
 * when the table is a vocabulary slice: another rank adds the token's embedding); with the whole
 * table such a token is a bug upstream, so its id is also written to the device flag bad_token
 * for the caller to check. No kernel reads outside the table.
 *
 * Backward must sum the rows that share a token, and floating-point atomics would sum them in a
 * different order on every run. Instead the rows are sorted by table row: keys (the table row,
 * or wte_rows for tokens outside the table, which sorts them last) with the row indices as
 * values, by CUB's radix sort, which is stable, so rows of one token stay in increasing order.
 * Then one thread per (sorted position, channel) that starts a run of equal keys walks the run
 * and adds dout's rows into dwte in increasing row order, the order of the CPU's loop: the sums
 * are the CPU's, bit for bit. A run's length is the token's count, so a frequent token costs one
 * longer walk; the walk first finds the run's end, so that its loads do not wait on one another
 * (only the adds form a chain), and the work in total is rows × C. The sort handles R pairs,
 * little next to the R × C scatter, and needs O(R) workspace, independent of the vocabulary
 * size (a counting sort by token would need a V-sized histogram).
 *
 * dwpe: each (position, channel) sums the rows r with r % seq_len = position − pos_offset, in
 * increasing r (increasing batch index), again the CPU's order. No atomics anywhere.
 */
#include <cuda_runtime.h>

#include <cstdint>

#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/chunked_loop.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/index_math.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/launch_check.cuh"

namespace dape::cuda {
namespace {

constexpr int64_t kInt32Max = 2147483647;

__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* wte,
                                         int64_t wte_rows, const float* wpe, int64_t rows,
                                         int64_t C, int seq_len, int pos_offset,
                                         int64_t vocab_begin, int32_t* bad_token, bool vec) {
  const int64_t row_chunks = chunks_of_4(C);
  const int64_t items = rows * row_chunks;
  for (int64_t i = grid_thread_index(); i < items; i += grid_thread_count()) {
    const int64_t r = i / row_chunks, c = 4 * (i % row_chunks);
    const int32_t token = tokens[r];
    const int64_t table_row = embedding_table_row(token, vocab_begin, wte_rows);
    float* o = out + r * C;
    if (table_row < 0 && vocab_begin < 0) {  // not in the whole table: a bug, reported
      if (c == 0) *bad_token = token;
      store4(o, c, C, vec, make_float4(0.f, 0.f, 0.f, 0.f));
      continue;
    }
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (wpe != nullptr) {
      const int64_t position = pos_offset + r % seq_len;
      const float4 p = load4(wpe + position * C, c, C, vec);
      if (table_row >= 0) {
        const float4 e = load4(wte + table_row * C, c, C, vec);
        v = make_float4(e.x + p.x, e.y + p.y, e.z + p.z, e.w + p.w);
      } else {
        v = p;  // another slice's token: that rank adds its embedding
      }
    } else if (table_row >= 0) {
      v = load4(wte + table_row * C, c, C, vec);
    }
    store4(o, c, C, vec, v);
  }
}

__global__ void embedding_sort_keys_kernel(uint32_t* keys, int32_t* row_ids, const int32_t* tokens,
                                           int64_t rows, int64_t vocab_begin, int64_t wte_rows) {
  for (int64_t r = grid_thread_index(); r < rows; r += grid_thread_count()) {
    keys[r] = embedding_sort_key(embedding_table_row(tokens[r], vocab_begin, wte_rows), wte_rows);
    row_ids[r] = static_cast<int32_t>(r);
  }
}

// keys sorted ascending, row_ids the rows in that order (increasing within equal keys).
__global__ void embedding_backward_wte_kernel(float* dwte, const float* dout, const uint32_t* keys,
                                              const int32_t* row_ids, int64_t rows, int64_t C,
                                              uint32_t no_row_key) {
  const int64_t items = rows * C;
  for (int64_t i = grid_thread_index(); i < items; i += grid_thread_count()) {
    const int64_t s = i / C, c = i % C;
    const uint32_t key = keys[s];
    if (key == no_row_key || (s > 0 && keys[s - 1] == key)) continue;  // not the start of a run
    int64_t end = s + 1;                                               // the run is [s, end)
    while (end < rows && keys[end] == key) ++end;
    float* d = dwte + static_cast<int64_t>(key) * C + c;
    float acc = *d;
#pragma unroll 4
    for (int64_t j = s; j < end; ++j) acc += dout[static_cast<int64_t>(row_ids[j]) * C + c];
    *d = acc;
  }
}

__global__ void embedding_backward_wpe_kernel(float* dwpe, const float* dout, int64_t rows,
                                              int64_t C, int seq_len, int pos_offset) {
  const int64_t positions = rows < seq_len ? rows : seq_len;
  const int64_t items = positions * C;
  for (int64_t i = grid_thread_index(); i < items; i += grid_thread_count()) {
    const int64_t p = i / C, c = i % C;
    float* d = dwpe + (pos_offset + p) * C + c;
    float acc = *d;
    for (int64_t r = p; r < rows; r += seq_len) acc += dout[r * C + c];
    *d = acc;
  }
}

// Bytes of CUB's temporary storage to sort `rows` pairs on all 32 key bits.
int64_t sort_temp_bytes(int64_t rows) {
  size_t bytes = 0;
  DAPE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr),
      static_cast<int>(rows)));
  return static_cast<int64_t>(bytes);
}

template <class T>
T* at_offset(char* base, int64_t offset) {
  return reinterpret_cast<T*>(base + offset);
}

}  // namespace

void embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t wte_rows,
                       const float* wpe, int64_t rows, int64_t C, int seq_len, int pos_offset,
                       int64_t vocab_begin, int32_t* bad_token, cudaStream_t stream) {
  if (rows <= 0 || C <= 0) return;
  DAPE_CUDA_REQUIRE(wpe == nullptr || seq_len > 0,
                    "embedding_forward: seq_len must be positive with position embeddings");
  const bool vec =
      C % 4 == 0 && aligned16(out) && aligned16(wte) && (wpe == nullptr || aligned16(wpe));
  const int blocks = grid_blocks(rows * chunks_of_4(C), kBlockThreads, kMaxGridStrideBlocks);
  embedding_forward_kernel<<<blocks, kBlockThreads, 0, stream>>>(
      out, tokens, wte, wte_rows, wpe, rows, C, seq_len, pos_offset, vocab_begin, bad_token, vec);
  DAPE_CUDA_LAUNCHED("embedding_forward_kernel");
}

int64_t embedding_backward_workspace(int64_t rows) {
  DAPE_CUDA_REQUIRE(rows >= 0 && rows <= kInt32Max,
                    "embedding_backward: the row count must be in [0, 2^31)");
  return embedding_workspace_bytes(rows, sort_temp_bytes(rows));
}

void embedding_backward(float* dwte, int64_t wte_rows, float* dwpe, const float* dout,
                        const int32_t* tokens, int64_t rows, int64_t C, int seq_len, int pos_offset,
                        int64_t vocab_begin, void* workspace, cudaStream_t stream) {
  if (rows <= 0 || C <= 0) return;
  DAPE_CUDA_REQUIRE(rows <= kInt32Max, "embedding_backward: the row count must be below 2^31");
  DAPE_CUDA_REQUIRE(wte_rows >= 0 && wte_rows < kInt32Max,
                    "embedding_backward: the table must have fewer than 2^31 - 1 rows");
  DAPE_CUDA_REQUIRE(dwpe == nullptr || seq_len > 0,
                    "embedding_backward: seq_len must be positive with position embeddings");
  if (wte_rows > 0) {
    const int64_t temp_bytes = sort_temp_bytes(rows);
    const EmbeddingSortLayout layout = embedding_sort_layout(rows, temp_bytes);
    char* base =
        reinterpret_cast<char*>(align_up(reinterpret_cast<uintptr_t>(workspace), kWorkspaceAlign));
    uint32_t* keys_in = at_offset<uint32_t>(base, layout.keys_in);
    uint32_t* keys_out = at_offset<uint32_t>(base, layout.keys_out);
    int32_t* rows_in = at_offset<int32_t>(base, layout.rows_in);
    int32_t* rows_out = at_offset<int32_t>(base, layout.rows_out);

    embedding_sort_keys_kernel<<<grid_blocks(rows, kBlockThreads, kMaxGridStrideBlocks),
                                 kBlockThreads, 0, stream>>>(keys_in, rows_in, tokens, rows,
                                                             vocab_begin, wte_rows);
    DAPE_CUDA_LAUNCHED("embedding_sort_keys_kernel");
    size_t temp = static_cast<size_t>(temp_bytes);
    DAPE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(static_cast<void*>(base + layout.sort_temp),
                                                    temp, keys_in, keys_out, rows_in, rows_out,
                                                    static_cast<int>(rows), 0, 32, stream));
    const int blocks = grid_blocks(rows * C, kBlockThreads, kMaxGridStrideBlocks);
    embedding_backward_wte_kernel<<<blocks, kBlockThreads, 0, stream>>>(
        dwte, dout, keys_out, rows_out, rows, C, embedding_sort_key(-1, wte_rows));
    DAPE_CUDA_LAUNCHED("embedding_backward_wte_kernel");
  }

  if (dwpe != nullptr) {
    const int64_t positions = rows < seq_len ? rows : seq_len;
    const int blocks = grid_blocks(positions * C, kBlockThreads, kMaxGridStrideBlocks);
    embedding_backward_wpe_kernel<<<blocks, kBlockThreads, 0, stream>>>(dwpe, dout, rows, C,
                                                                        seq_len, pos_offset);
    DAPE_CUDA_LAUNCHED("embedding_backward_wpe_kernel");
  }
}

}  // namespace dape::cuda
