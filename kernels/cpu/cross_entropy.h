/*
 * Fused softmax cross-entropy. One pass per row computes max and log-sum-exp over the real
 * vocabulary; the loss is written, and when a gradient is wanted the logits row is overwritten
 * in place by grad_scale · (softmax − onehot) (zeros in the padding columns), so the
 * probabilities are never stored twice.
 *
 * Vocabulary-parallel: each rank holds a slice of the columns. The row's softmax needs the max
 * and the sum of exponentials over all of them, so each slice reports (its max m_s, Σ exp(x −
 * m_s), the target's logit if it holds the target), the ranks exchange these 3 numbers per row,
 * and each combines them as M = max m_s, S = Σ_s sum_s · exp(m_s − M) — the usual rescaling of
 * partial log-sum-exps, so no rank ever needs another's logits. Sums in double.
 */
#pragma once

#include <cstdint>

namespace dape::cpu {

// logits [rows, padded_vocab]; targets [rows] in [0, vocab); losses [rows].
template <class T>
void cross_entropy(T* losses, T* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                   int64_t padded_vocab, double grad_scale);

// Vocabulary-parallel halves (kernels/ops.h): logits [rows, width] are the columns
// [vocab_begin, vocab_begin + width) of the whole row; columns >= vocab are padding.
// stats [rows, 3] = (max over real columns, Σ exp(x − max), target logit or 0).
template <class T>
void cross_entropy_slice_stats(T* stats, const T* logits, const int32_t* targets, int64_t rows,
                               int64_t width, int64_t vocab_begin, int64_t vocab);
// all_stats [slices, rows, 3]; losses [rows]; logits overwritten by their gradient when
// grad_scale != 0.
template <class T>
void cross_entropy_from_slice_stats(T* losses, T* logits, const T* all_stats, int64_t slices,
                                    const int32_t* targets, int64_t rows, int64_t width,
                                    int64_t vocab_begin, int64_t vocab, double grad_scale);

}  // namespace dape::cpu
