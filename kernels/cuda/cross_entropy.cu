/*
 * Fused softmax cross-entropy, one block per row (kernels/ops.h has the contract; the CPU
 * kernel, kernels/cpu/cross_entropy.cpp, the same arithmetic).
 *
 * Statistics in one sweep: each thread keeps an online (max m, Σ exp(x − m)) over its chunks of
 * the row, rescaling its sum when its max grows; the block then takes the max M of the threads'
 * maxima and the sum of their sums rescaled to M (block_reduce.cuh: fixed trees, no atomics).
 * The loss is (M − x_target) + log S in double. The gradient, when wanted, is a second sweep that
 * writes grad_scale · e_j / S over the real columns (e_j = expf(x_j − M), the product in float,
 * as the CPU's), grad_scale · (e_t / S − 1) in double at the target, and 0 in the padding. So a
 * row is read twice and written once; a three-sweep version (max, then sum, then gradient) would
 * read it three times, and the rows in flight (a 50k-column row is 200 kB) do not stay in L2.
 *
 * Exponentials are float (expf, 2 ulp), as on the CPU; sums are double, where the CPU adds float
 * partial sums of 64 terms in double, so S agrees to about 1e-7 relative. Where the target's
 * probability is near 1 its gradient grad_scale · (p_t − 1) cancels, and that difference shows
 * as about grad_scale · 1e-7 absolute: comparisons with the CPU need an absolute tolerance of
 * that size.
 *
 * The target's logit is read before the block reductions, whose barriers order it before the
 * gradient sweep overwrites the row. A target outside [0, vocab) writes its id to *bad_target
 * (the caller checks it) and NaN as the loss, reads no logit, and subtracts no one-hot.
 *
 * Vocabulary-parallel halves: cross_entropy_slice_stats is the statistics sweep over a slice's
 * real columns (max −inf and sum 0 when it has none); cross_entropy_from_slice_stats combines
 * the slices' (max, sum, target logit) in double, in slice order, and writes the slice's part of
 * the same gradient.
 *
 * Rows are read in chunks of four (float4 when the row width and the pointer allow; the order of
 * the arithmetic does not depend on it).
 */
#include <cuda_runtime.h>

#include <cstdint>

#include <math.h>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/chunked_loop.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/index_math.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/launch_check.cuh"

namespace dape::cuda {
namespace {

int row_blocks(int64_t rows) {
  return static_cast<int>(rows < kMaxRowBlocks ? rows : kMaxRowBlocks);
}

// One thread's running (max, Σ exp(x − max)).
struct OnlineSoftmax {
  float max = -INFINITY;
  double sum = 0;

  __device__ void add(float x) {
    if (x > max) {  // exp(−inf − x) = 0 drops the old sum when there was no max yet
      sum = sum * static_cast<double>(expf(max - x)) + 1.0;
      max = x;
    } else {
      // x == max also covers x = max = −inf, where exp(x − max) would be exp(NaN); a NaN x falls
      // through to expf and makes the sum NaN, as it must.
      sum += x == max ? 1.0 : static_cast<double>(expf(x - max));
    }
  }
  __device__ void add4(const float4& v, int64_t j, int64_t n) {
    add(v.x);
    if (j + 1 < n) add(v.y);
    if (j + 2 < n) add(v.z);
    if (j + 3 < n) add(v.w);
  }
};

struct RowStats {
  float max;   // −inf for an empty row
  double sum;  // Σ exp(x − max); 0 for an empty row
};

// Max and Σ exp(x − max) over row[0, n), reduced over the block. Every thread must call it.
__device__ RowStats row_stats(const float* row, int64_t n, bool vec, float* max_scratch,
                              double* sum_scratch) {
  OnlineSoftmax s;
  for (int64_t c = threadIdx.x; 4 * c < n; c += blockDim.x)
    s.add4(load4(row, 4 * c, n, vec), 4 * c, n);
  RowStats st;
  st.max = block_max(s.max, max_scratch);
  // A thread that saw no element has sum 0; skip its rescale, which is NaN when st.max = −inf.
  const double mine = s.sum == 0 ? 0.0 : s.sum * static_cast<double>(expf(s.max - st.max));
  st.sum = block_sum(mine, sum_scratch);
  return st;
}

// The gradient of element j: grad_scale · (p_j − [j = target]) over the real columns (j < n),
// 0 in the padding.
struct SoftmaxGrad {
  float max;
  double sum;
  double grad_scale;
  float factor;  // grad_scale / sum
  int64_t n;
  int64_t target;  // -1: none in this row or slice

  __device__ float operator()(float x, int64_t j) const {
    if (j >= n) return 0.f;
    const float e = expf(x - max);
    if (j == target) return static_cast<float>(grad_scale * (static_cast<double>(e) / sum - 1.0));
    return e * factor;
  }
};

__device__ void write_grad(float* row, int64_t width, bool vec, const SoftmaxGrad& grad) {
  for (int64_t c = threadIdx.x; 4 * c < width; c += blockDim.x) {
    const int64_t j = 4 * c;
    const float4 v = load4(row, j, width, vec);
    store4(row, j, width, vec,
           make_float4(grad(v.x, j), grad(v.y, j + 1), grad(v.z, j + 2), grad(v.w, j + 3)));
  }
}

__global__ void cross_entropy_kernel(float* losses, float* logits, const int32_t* targets,
                                     int64_t rows, int64_t padded, int vocab, float grad_scale,
                                     int32_t* bad_target, bool vec) {
  __shared__ float max_scratch[32];
  __shared__ double sum_scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float* row = logits + r * padded;
    const int32_t target = targets[r];
    const bool valid = target >= 0 && target < vocab;
    const float target_logit = valid ? row[target] : 0.f;
    const RowStats st = row_stats(row, vocab, vec, max_scratch, sum_scratch);
    if (threadIdx.x == 0) {
      if (valid) {
        losses[r] = static_cast<float>(
            (static_cast<double>(st.max) - static_cast<double>(target_logit)) + log(st.sum));
      } else {
        losses[r] = NAN;
        *bad_target = target;
      }
    }
    if (grad_scale != 0.f) {
      const double scale = grad_scale;
      write_grad(row, padded, vec,
                 SoftmaxGrad{st.max, st.sum, scale, static_cast<float>(scale / st.sum), vocab,
                             valid ? target : -1});
    }
  }
}

__global__ void cross_entropy_slice_stats_kernel(float* stats, const float* logits,
                                                 const int32_t* targets, int64_t rows, int64_t cols,
                                                 int64_t real_cols, int64_t vocab_begin, bool vec) {
  __shared__ float max_scratch[32];
  __shared__ double sum_scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = logits + r * cols;
    const RowStats st = row_stats(row, real_cols, vec, max_scratch, sum_scratch);
    if (threadIdx.x == 0) {
      const int64_t t = targets[r] - vocab_begin;
      stats[r * 3 + 0] = st.max;
      stats[r * 3 + 1] = static_cast<float>(st.sum);
      stats[r * 3 + 2] = t >= 0 && t < real_cols ? row[t] : 0.f;
    }
  }
}

__global__ void cross_entropy_from_slice_stats_kernel(float* losses, float* logits,
                                                      const float* all_stats, int64_t slices,
                                                      const int32_t* targets, int64_t rows,
                                                      int64_t cols, int64_t real_cols,
                                                      int64_t vocab_begin, float grad_scale,
                                                      bool vec) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    // Every thread combines the slices (a handful of values, the same order in every thread).
    double M = -INFINITY, target_logit = 0;
    for (int64_t s = 0; s < slices; ++s) {
      M = fmax(M, static_cast<double>(all_stats[(s * rows + r) * 3]));
      target_logit += all_stats[(s * rows + r) * 3 + 2];
    }
    double S = 0;
    for (int64_t s = 0; s < slices; ++s) {
      const float* st = all_stats + (s * rows + r) * 3;
      if (st[1] > 0) S += static_cast<double>(st[1]) * exp(static_cast<double>(st[0]) - M);
    }
    if (threadIdx.x == 0) losses[r] = static_cast<float>(M + log(S) - target_logit);
    if (grad_scale != 0.f) {
      const double scale = grad_scale;
      const int64_t t = targets[r] - vocab_begin;
      // M is the largest of float maxima, so the float conversion is exact.
      write_grad(logits + r * cols, cols, vec,
                 SoftmaxGrad{static_cast<float>(M), S, scale, static_cast<float>(scale / S),
                             real_cols, t >= 0 && t < real_cols ? t : -1});
    }
  }
}

// Columns [0, n) of a slice at vocab_begin of width cols are real vocabulary.
int64_t real_columns(int64_t vocab_begin, int64_t cols, int vocab) {
  const int64_t n = vocab - vocab_begin;
  return n < 0 ? 0 : (n > cols ? cols : n);
}

}  // namespace

void cross_entropy(float* losses, float* logits, const int32_t* targets, int64_t rows,
                   int64_t padded, int vocab, float grad_scale, int32_t* bad_target,
                   cudaStream_t stream) {
  if (rows <= 0) return;
  DAPE_CUDA_REQUIRE(vocab >= 1 && vocab <= padded,
                    "cross_entropy: vocab must be in [1, the padded row width]");
  const bool vec = padded % 4 == 0 && aligned16(logits);
  cross_entropy_kernel<<<row_blocks(rows), kBlockThreads, 0, stream>>>(
      losses, logits, targets, rows, padded, vocab, grad_scale, bad_target, vec);
  DAPE_CUDA_LAUNCHED("cross_entropy_kernel");
}

void cross_entropy_slice_stats(float* stats, const float* logits, const int32_t* targets,
                               int64_t rows, int64_t cols, int64_t vocab_begin, int vocab,
                               cudaStream_t stream) {
  if (rows <= 0) return;
  const bool vec = cols % 4 == 0 && aligned16(logits);
  cross_entropy_slice_stats_kernel<<<row_blocks(rows), kBlockThreads, 0, stream>>>(
      stats, logits, targets, rows, cols, real_columns(vocab_begin, cols, vocab), vocab_begin, vec);
  DAPE_CUDA_LAUNCHED("cross_entropy_slice_stats_kernel");
}

void cross_entropy_from_slice_stats(float* losses, float* logits, const float* all_stats,
                                    int64_t slices, const int32_t* targets, int64_t rows,
                                    int64_t cols, int64_t vocab_begin, int vocab, float grad_scale,
                                    cudaStream_t stream) {
  if (rows <= 0) return;
  const bool vec = cols % 4 == 0 && aligned16(logits);
  cross_entropy_from_slice_stats_kernel<<<row_blocks(rows), kBlockThreads, 0, stream>>>(
      losses, logits, all_stats, slices, targets, rows, cols,
      real_columns(vocab_begin, cols, vocab), vocab_begin, grad_scale, vec);
  DAPE_CUDA_LAUNCHED("cross_entropy_from_slice_stats_kernel");
}

}  // namespace dape::cuda
