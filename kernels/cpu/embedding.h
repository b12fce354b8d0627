/*
 * Token (and learned absolute position) embeddings. Forward gathers rows; backward scatters
 * gradients into the tables. The scatter is parallel over channels, not rows, so that two
 * occurrences of one token never race and the sum order is fixed: deterministic without atomics.
 */
#pragma once

#include <cstdint>

namespace dape::cpu {

// out[r, :] = wte[tokens[r], :] (+ wpe[pos_offset + r % seq_len, :] when wpe != nullptr).
// wte has `vocab` rows. vocab_begin < 0: they are the whole table, and every token id must be in
// [0, vocab). vocab_begin >= 0: they are the rows [vocab_begin, vocab_begin + vocab) of a table
// split over ranks; ids must be >= 0, and an id outside the slice gives a zero row (plus wpe).
// Every position must be in [0, positions).
template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t rows,
                       int64_t C, int64_t vocab, int64_t vocab_begin, int64_t positions,
                       int seq_len, int pos_offset);

// dwte (rows of the slice only) and dwpe += the scatter of dout.
template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int64_t rows,
                        int64_t C, int64_t vocab, int64_t vocab_begin, int64_t positions,
                        int seq_len, int pos_offset);

}  // namespace dape::cpu
