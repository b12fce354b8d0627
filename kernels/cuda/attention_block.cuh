/*
 * What one thread block of the fused attention is made of, written once for the GPU and for a
 * host emulation of it.
 *
 * A block's work is a sequence of phases separated by barriers; inside a phase every thread
 * runs the same loop over work items (item = tid, tid + kThreads, ...), and no thread reads what
 * another writes in the same phase. The kernels are templates on a Block that provides
 *   threads(f)  f(tid) for the calling thread (GPU) or for every tid in turn (host),
 *   warps(f)    f(warp) likewise, for warp-wide work (the tensor-core fragments),
 *   sync()      __syncthreads() (GPU) or nothing (host: a phase has finished for every thread
 *               before the next starts).
 * Every value that lives across a barrier is in shared memory, none in registers, so the host
 * emulation (HostBlock) runs the very same code and tests it against the CPU reference; running
 * its threads in reverse order as well shows up any read of another thread's write inside a
 * phase.
 *
 * tile_gemm multiplies small matrices held in shared memory, C (float) = or += A·B, a batch of
 * them at once, with A and B row- or column-major. Its operands are float (fp32 mode: a scalar
 * loop on CUDA cores, one output element per thread) or bf16 (bf16 mode: nvcuda::wmma 16×16×16
 * fragments with fp32 accumulation, one output tile per warp; on the host, the same products of
 * the bf16 values summed in float). M, N and K must be multiples of 16 in both modes, so both
 * modes see the same padded buffers. A mode (Fp32Mode, Bf16Mode) names the operand type and
 * whether operands have buffers of their own; the host also has ExactBf16Mode, bf16 mode's data
 * flow with float values, which must agree with fp32 mode to rounding.
 */
#pragma once

#include <math.h>
#include <stdint.h>

#include <type_traits>

#include "kernels/attention_tiling.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <mma.h>
#define DAPE_TILE __device__
#else
#include <cstdio>
#include <cstdlib>
#include <cstring>
#define DAPE_TILE
#endif

namespace dape::cuda::tile {

using attention_tiling::kFragment;
using attention_tiling::kThreads;
using attention_tiling::kWarps;

// An internal invariant: traps on the GPU, aborts the host emulation.
#if defined(__CUDACC__)
#define DAPE_TILE_ASSERT(cond) \
  do {                         \
    if (!(cond)) __trap();     \
  } while (0)
#else
#define DAPE_TILE_ASSERT(cond)                                                               \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: tile invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)
#endif

// ---- the bf16 operand type ---------------------------------------------------------------------

#if defined(__CUDACC__)
using Bf16 = __nv_bfloat16;
DAPE_TILE inline Bf16 to_bf16(float x) {
  return __float2bfloat16(x);  // round to nearest even
}
DAPE_TILE inline float from_bf16(Bf16 x) {
  return __bfloat162float(x);
}
#else
// The host emulation's bf16: the upper 16 bits of a float, rounded to nearest even.
struct Bf16 {
  uint16_t bits;
};
inline Bf16 to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0)
    return Bf16{static_cast<uint16_t>((u >> 16) | 0x0040u)};  // a quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return Bf16{static_cast<uint16_t>(u >> 16)};
}
inline float from_bf16(Bf16 x) {
  const uint32_t u = static_cast<uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
#endif

#if !defined(__CUDACC__)
// The host emulation's check of the bf16 mode's data flow: an operand type that goes where bf16
// operands go (buffers of their own, the tensor-core GEMM's tiles) but keeps the float value, so
// that the results match fp32 mode's to rounding.
struct ExactOperand {
  float value;
};
#endif

DAPE_TILE inline float operand_value(float x) {
  return x;
}
DAPE_TILE inline float operand_value(Bf16 x) {
  return from_bf16(x);
}
#if !defined(__CUDACC__)
inline float operand_value(ExactOperand x) {
  return x.value;
}
#endif
template <class Op>
DAPE_TILE inline Op to_operand(float x) {
  if constexpr (std::is_same_v<Op, float>) {
    return x;
#if !defined(__CUDACC__)
  } else if constexpr (std::is_same_v<Op, ExactOperand>) {
    return ExactOperand{x};
#endif
  } else {
    return to_bf16(x);
  }
}

// ---- precision modes ---------------------------------------------------------------------------

// A mode gives the GEMM operands' type, and whether operands live in buffers of their own,
// converted from the float buffers (bf16), or are the float buffers themselves (fp32).
struct Fp32Mode {
  using Op = float;
  static constexpr bool kOwnOperands = false;
};
struct Bf16Mode {
  using Op = Bf16;
  static constexpr bool kOwnOperands = true;
};
#if !defined(__CUDACC__)
struct ExactBf16Mode {  // bf16 mode's data flow with float values (host emulation only)
  using Op = ExactOperand;
  static constexpr bool kOwnOperands = true;
};
#endif

// ---- executors ---------------------------------------------------------------------------------

#if defined(__CUDACC__)
struct DeviceBlock {
  template <class F>
  __device__ void threads(F&& f) const {
    f(static_cast<int>(threadIdx.x));
  }
  template <class F>
  __device__ void warps(F&& f) const {
    f(static_cast<int>(threadIdx.x) / 32);
  }
  __device__ void sync() const { __syncthreads(); }
};
#else
struct HostBlock {
  bool reversed = false;  // run the threads (and warps) of every phase last to first
  template <class F>
  void threads(F&& f) const {
    for (int i = 0; i < kThreads; ++i) f(reversed ? kThreads - 1 - i : i);
  }
  template <class F>
  void warps(F&& f) const {
    for (int i = 0; i < kWarps; ++i) f(reversed ? kWarps - 1 - i : i);
  }
  void sync() const {}
};
#endif

// ---- small matrices in shared memory -----------------------------------------------------------

// Element (r, c) of a matrix with leading dimension ld.
struct RowMajor {
  DAPE_TILE static int at(int r, int c, int ld) { return r * ld + c; }
};
struct ColMajor {
  DAPE_TILE static int at(int r, int c, int ld) { return c * ld + r; }
};

// A batch of operand matrices: matrix i starts at p + i·batch_stride.
template <class Op>
struct Operand {
  const Op* p;
  int ld;
  int batch_stride;
};
// A batch of float results.
struct Result {
  float* p;
  int ld;
  int batch_stride;
  bool col_major;
};

// C[i] (M×N) = A[i] (M×K) · B[i] (K×N), or C[i] += ..., for i < batch. LA, LB: RowMajor or
// ColMajor. Pointers and leading dimensions must suit the tensor-core fragments: 32-byte aligned
// tiles and ld a multiple of 16 elements (every TileLayout buffer is).
template <class LA, class LB, class Op, class Block>
DAPE_TILE void tile_gemm(const Block& blk, int batch, int M, int N, int K, Operand<Op> a,
                         Operand<Op> b, Result c, bool accumulate) {
  DAPE_TILE_ASSERT(M % kFragment == 0 && N % kFragment == 0 && K % kFragment == 0);
  if constexpr (std::is_same_v<Op, float>) {
    // One output element per thread and step; consecutive threads take consecutive elements
    // along C's contiguous dimension.
    blk.threads([&](int tid) {
      const int per = M * N, total = batch * per;
      for (int idx = tid; idx < total; idx += kThreads) {
        const int i = idx / per, e = idx - i * per;
        const int m = c.col_major ? e % M : e / N;
        const int n = c.col_major ? e / M : e % N;
        const float* ap = a.p + i * a.batch_stride;
        const float* bp = b.p + i * b.batch_stride;
        float* cp = c.p + i * c.batch_stride + (c.col_major ? n * c.ld + m : m * c.ld + n);
        float sum = accumulate ? *cp : 0.0f;
        for (int k = 0; k < K; ++k) sum += ap[LA::at(m, k, a.ld)] * bp[LB::at(k, n, b.ld)];
        *cp = sum;
      }
    });
  } else {
    const int mt = M / kFragment, nt = N / kFragment, tiles = batch * mt * nt;
    blk.warps([&](int warp) {
      for (int t = warp; t < tiles; t += kWarps) {
        const int i = t / (mt * nt), e = t - i * (mt * nt);
        const int m0 = (e / nt) * kFragment, n0 = (e % nt) * kFragment;
        const Op* ap = a.p + i * a.batch_stride;
        const Op* bp = b.p + i * b.batch_stride;
        float* cp = c.p + i * c.batch_stride + (c.col_major ? n0 * c.ld + m0 : m0 * c.ld + n0);
#if defined(__CUDACC__)
        static_assert(std::is_same_v<Op, Bf16>, "tensor-core operands are bf16");
        namespace wmma = nvcuda::wmma;
        using FragA =
            std::conditional_t<std::is_same_v<LA, RowMajor>, wmma::row_major, wmma::col_major>;
        using FragB =
            std::conditional_t<std::is_same_v<LB, RowMajor>, wmma::row_major, wmma::col_major>;
        const wmma::layout_t layout = c.col_major ? wmma::mem_col_major : wmma::mem_row_major;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        if (accumulate)
          wmma::load_matrix_sync(acc, cp, c.ld, layout);
        else
          wmma::fill_fragment(acc, 0.0f);
        for (int k0 = 0; k0 < K; k0 += kFragment) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, FragA> fa;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, FragB> fb;
          wmma::load_matrix_sync(fa, ap + LA::at(m0, k0, a.ld), a.ld);
          wmma::load_matrix_sync(fb, bp + LB::at(k0, n0, b.ld), b.ld);
          wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(cp, acc, c.ld, layout);
#else
        for (int r = 0; r < kFragment; ++r)
          for (int s = 0; s < kFragment; ++s) {
            float* out = cp + (c.col_major ? s * c.ld + r : r * c.ld + s);
            float sum = accumulate ? *out : 0.0f;
            for (int k = 0; k < K; ++k)
              sum += operand_value(ap[LA::at(m0 + r, k, a.ld)]) *
                     operand_value(bp[LB::at(k, n0 + s, b.ld)]);
            *out = sum;
          }
#endif
      }
    });
  }
}

}  // namespace dape::cuda::tile
