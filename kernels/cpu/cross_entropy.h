/*
 * Fused softmax cross-entropy. One pass per row computes max and log-sum-exp over the real
 * vocabulary; the loss is written, and when a gradient is wanted the logits row is overwritten
 * in place by grad_scale · (softmax − onehot) (zeros in the padding columns), so the
 * probabilities are never stored twice.
 */
#pragma once

#include <cstdint>

namespace dape::cpu {

// logits [rows, padded_vocab]; targets [rows] in [0, vocab); losses [rows].
template <class T>
void cross_entropy(T* losses, T* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                   int64_t padded_vocab, double grad_scale);

}  // namespace dape::cpu
