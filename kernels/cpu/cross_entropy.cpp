/*
 * Fused softmax cross-entropy, one row per OpenMP iteration, in three sweeps over the row
 * (a 50k-column float row is 200 kB and stays in L2 between them):
 *   1. m = max over the real vocabulary;
 *   2. e_j = exp(x_j − m) and their sum S (float sums over chunks of kSumChunk, added in
 *      double); when a gradient is wanted, e_j is written over the logit, so the exponentials
 *      are computed once;
 *   3. logit_j = grad_scale · e_j / S, minus grad_scale at the target, 0 in the padding.
 * loss = (m − x_target) + log S, in double.
 *
 * Float uses vec_exp (vector_math.h) so the sweeps vectorize; double uses std::exp. A NaN logit
 * makes that row's loss NaN (it reaches S through exp), which is what a trainer must see.
 * Targets are validated on the calling thread first; a bad one is a bug (the data loader
 * validates user data), reported with its row and value.
 */
#include "kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "common/check.h"
#include "kernels/cpu/vector_math.h"

namespace dape::cpu {
namespace {

// Elements per float partial sum of the exponentials: 4 per SIMD lane at 16 lanes, so each
// partial sum rounds a handful of times before it is added in double.
constexpr int64_t kSumChunk = 64;

}  // namespace

template <class T>
void cross_entropy(T* losses, T* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                   int64_t padded_vocab, double grad_scale) {
  DAPE_CHECK(vocab > 0 && vocab <= padded_vocab,
             "cross_entropy: vocab {} must be in [1, padded width {}]", vocab, padded_vocab);
  for (int64_t r = 0; r < rows; ++r) {
    DAPE_CHECK(targets[r] >= 0 && targets[r] < vocab,
               "cross_entropy: target {} at row {} is outside [0, {})", targets[r], r, vocab);
  }
  const bool want_grad = grad_scale != 0.0;
#pragma omp parallel for schedule(static) if (rows > 1 && rows * vocab >= (int64_t{1} << 15))
  for (int64_t r = 0; r < rows; ++r) {
    T* row = logits + r * padded_vocab;
    const int64_t target = targets[r];
    const double target_logit = row[target];

    T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < vocab; ++j) m = row[j] > m ? row[j] : m;

    double sum = 0;
    if constexpr (std::is_same_v<T, float>) {
      // Float partial sums over short chunks, added in double: summing the float exponentials
      // straight into a double costs a conversion per element and halves the vector width.
      for (int64_t j0 = 0; j0 < vocab; j0 += kSumChunk) {
        const int64_t j1 = std::min(vocab, j0 + kSumChunk);
        float chunk = 0;
        if (want_grad) {
#pragma omp simd simdlen(16) reduction(+ : chunk)
          for (int64_t j = j0; j < j1; ++j) {
            const float e = vec_exp(row[j] - m);
            row[j] = e;
            chunk += e;
          }
        } else {
#pragma omp simd simdlen(16) reduction(+ : chunk)
          for (int64_t j = j0; j < j1; ++j) chunk += vec_exp(row[j] - m);
        }
        sum += static_cast<double>(chunk);
      }
    } else {
      for (int64_t j = 0; j < vocab; ++j) {
        const double e = std::exp(row[j] - m);
        if (want_grad) row[j] = e;
        sum += e;
      }
    }
    losses[r] = static_cast<T>((static_cast<double>(m) - target_logit) + std::log(sum));

    if (!want_grad) continue;
    const T factor = static_cast<T>(grad_scale / sum);
    const double p_target = static_cast<double>(row[target]) / sum;
#pragma omp simd
    for (int64_t j = 0; j < vocab; ++j) row[j] *= factor;
    row[target] = static_cast<T>(grad_scale * (p_target - 1.0));
#pragma omp simd
    for (int64_t j = vocab; j < padded_vocab; ++j) row[j] = T(0);
  }
}

template void cross_entropy<float>(float*, float*, const int32_t*, int64_t, int64_t, int64_t,
                                   double);
template void cross_entropy<double>(double*, double*, const int32_t*, int64_t, int64_t, int64_t,
                                    double);

template <class T>
void cross_entropy_slice_stats(T* stats, const T* logits, const int32_t* targets, int64_t rows,
                               int64_t width, int64_t vocab_begin, int64_t vocab) {
  DAPE_CHECK(vocab_begin >= 0 && width > 0, "cross_entropy_slice_stats: slice at {} of width {}",
             vocab_begin, width);
  for (int64_t r = 0; r < rows; ++r) {
    DAPE_CHECK(targets[r] >= 0 && targets[r] < vocab,
               "cross_entropy_slice_stats: target {} at row {} is outside [0, {})", targets[r], r,
               vocab);
  }
  // Real columns of this slice: [0, n).
  const int64_t n = std::clamp<int64_t>(vocab - vocab_begin, 0, width);
#pragma omp parallel for schedule(static) if (rows > 1 && rows * width >= (int64_t{1} << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = logits + r * width;
    double m = -std::numeric_limits<double>::infinity(), sum = 0;
    for (int64_t j = 0; j < n; ++j) m = std::max<double>(m, row[j]);
    for (int64_t j = 0; j < n; ++j) sum += std::exp(row[j] - m);
    const int64_t t = targets[r] - vocab_begin;
    stats[r * 3 + 0] = static_cast<T>(m);
    stats[r * 3 + 1] = static_cast<T>(sum);
    stats[r * 3 + 2] = t >= 0 && t < n ? row[t] : T(0);
  }
}

template <class T>
void cross_entropy_from_slice_stats(T* losses, T* logits, const T* all_stats, int64_t slices,
                                    const int32_t* targets, int64_t rows, int64_t width,
                                    int64_t vocab_begin, int64_t vocab, double grad_scale) {
  const int64_t n = std::clamp<int64_t>(vocab - vocab_begin, 0, width);
  const bool want_grad = grad_scale != 0.0;
#pragma omp parallel for schedule(static) if (rows > 1 && rows * width >= (int64_t{1} << 15))
  for (int64_t r = 0; r < rows; ++r) {
    double M = -std::numeric_limits<double>::infinity(), target_logit = 0;
    for (int64_t s = 0; s < slices; ++s) {
      M = std::max<double>(M, all_stats[(s * rows + r) * 3]);
      target_logit += all_stats[(s * rows + r) * 3 + 2];
    }
    double S = 0;
    for (int64_t s = 0; s < slices; ++s) {
      const T* st = all_stats + (s * rows + r) * 3;
      if (st[1] > 0) S += static_cast<double>(st[1]) * std::exp(static_cast<double>(st[0]) - M);
    }
    losses[r] = static_cast<T>(M + std::log(S) - target_logit);
    if (!want_grad) continue;
    T* row = logits + r * width;
    const int64_t t = targets[r] - vocab_begin;
    for (int64_t j = 0; j < n; ++j) {
      const double p = std::exp(row[j] - M) / S;
      row[j] = static_cast<T>(grad_scale * (p - (j == t ? 1.0 : 0.0)));
    }
    for (int64_t j = n; j < width; ++j) row[j] = T(0);
  }
}

template void cross_entropy_slice_stats<float>(float*, const float*, const int32_t*, int64_t,
                                               int64_t, int64_t, int64_t);
template void cross_entropy_slice_stats<double>(double*, const double*, const int32_t*, int64_t,
                                                int64_t, int64_t, int64_t);
template void cross_entropy_from_slice_stats<float>(float*, float*, const float*, int64_t,
                                                    const int32_t*, int64_t, int64_t, int64_t,
                                                    int64_t, double);
template void cross_entropy_from_slice_stats<double>(double*, double*, const double*, int64_t,
                                                     const int32_t*, int64_t, int64_t, int64_t,
                                                     int64_t, double);

}  // namespace dape::cpu
