/*
 * Embedding gather and scatter.
 *
 * Token ids and positions are validated on the calling thread before any parallel loop (a
 * check cannot throw out of an OpenMP region): the data loader validates user data, so a bad
 * id here is a bug, reported with the offending row and value.
 *
 * Backward splits the channels into blocks of kChannelBlock and gives each block to one
 * thread, which walks all rows in order: two rows with the same token add into the same table
 * row from one thread, in row order, so there is no race and the sums are the same for any
 * thread count. Each thread touches a C/kChannelBlock-th of every table row it updates, so the
 * scattered writes are whole cache lines.
 */
#include "kernels/cpu/embedding.h"

#include <algorithm>
#include <limits>

#include "common/check.h"
#include "kernels/ops_checks.h"

namespace dape::cpu {
namespace {

constexpr int64_t kChannelBlock = 64;

// The whole table (vocab_begin < 0): ids must be in [0, vocab). A slice: ids must be >= 0; those
// outside the slice belong to another rank's rows.
void check_tokens(const int32_t* tokens, int64_t rows, int64_t vocab, int64_t vocab_begin,
                  const char* what) {
  const int64_t end = vocab_begin < 0 ? vocab : std::numeric_limits<int32_t>::max() + int64_t{1};
  for (int64_t r = 0; r < rows; ++r) {
    DAPE_CHECK(tokens[r] >= 0 && tokens[r] < end, "{}: token id {} at row {} is outside [0, {})",
               what, tokens[r], r, vocab);
  }
}

}  // namespace

template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t rows,
                       int64_t C, int64_t vocab, int64_t vocab_begin, int64_t positions,
                       int seq_len, int pos_offset) {
  check_tokens(tokens, rows, vocab, vocab_begin, "embedding_forward");
  const int64_t first = std::max<int64_t>(vocab_begin, 0);
  if (wpe != nullptr) check_positions(rows, positions, seq_len, pos_offset, "embedding_forward");
#pragma omp parallel for schedule(static) if (rows * C >= (int64_t{1} << 15))
  for (int64_t r = 0; r < rows; ++r) {
    T* o = out + r * C;
    const int64_t row = tokens[r] - first;
    if (row < 0 || row >= vocab) {  // another slice's token: that rank adds its embedding
      if (wpe != nullptr) {
        const T* p = wpe + (pos_offset + r % seq_len) * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] = p[c];
      } else {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] = T(0);
      }
      continue;
    }
    const T* e = wte + row * C;
    if (wpe != nullptr) {
      const T* p = wpe + (pos_offset + r % seq_len) * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) o[c] = e[c] + p[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) o[c] = e[c];
    }
  }
}

template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int64_t rows,
                        int64_t C, int64_t vocab, int64_t vocab_begin, int64_t positions,
                        int seq_len, int pos_offset) {
  check_tokens(tokens, rows, vocab, vocab_begin, "embedding_backward");
  const int64_t first = std::max<int64_t>(vocab_begin, 0);
  if (dwpe != nullptr) check_positions(rows, positions, seq_len, pos_offset, "embedding_backward");
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static) if (rows * C >= (int64_t{1} << 15))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kChannelBlock, c1 = std::min(C, c0 + kChannelBlock);
    for (int64_t r = 0; r < rows; ++r) {
      const T* g = dout + r * C;
      const int64_t row = tokens[r] - first;
      if (row >= 0 && row < vocab) {
        T* e = dwte + row * C;
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) e[c] += g[c];
      }
      if (dwpe != nullptr) {
        T* p = dwpe + (pos_offset + r % seq_len) * C;
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) p[c] += g[c];
      }
    }
  }
}

#define DAPE_INSTANTIATE_EMBEDDING(T)                                                              \
  template void embedding_forward<T>(T*, const int32_t*, const T*, const T*, int64_t, int64_t,     \
                                     int64_t, int64_t, int64_t, int, int);                         \
  template void embedding_backward<T>(T*, T*, const T*, const int32_t*, int64_t, int64_t, int64_t, \
                                      int64_t, int64_t, int, int);
DAPE_INSTANTIATE_EMBEDDING(float)
DAPE_INSTANTIATE_EMBEDDING(double)
#undef DAPE_INSTANTIATE_EMBEDDING

}  // namespace dape::cpu
