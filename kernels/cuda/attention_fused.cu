/*
 * The fused DAPE attention on CUDA: the kernels and their launches.
 *
 * Why a thread block holds every head. DAPE's f turns the 2H-vector [S[:, i, j]; B[:, i, j]]
 * of a pair into H logits, so a block that forms the logits of a tile must form S and B of all H
 * heads for it. The block takes a tile of 16 query rows × 16 keys (256 pairs), computes S for
 * every head (q and k tiles of a few heads staged at a time, one GEMM batch), B, and f as two
 * GEMMs over the pairs ([pairs, 2H]·[2H, W], [pairs, W]·[W, H]); the tile's [2H, pairs] inputs,
 * the logits of its heads and f's hidden layer live in shared memory, nothing [N, N]-sized
 * anywhere (memory O(N·H·D) plus the blocks' tiles).
 *
 * Kernels (attention_tile.cuh holds their bodies and the math):
 *   forward  grid (B · query blocks, head groups): online softmax over the key tiles a query
 *            block sees (masked tiles skipped; the longest rows first), O = P·V, out and lse.
 *   dq       grid (min(B · query blocks, 1024), head groups): each block loops over query blocks
 *            and key tiles, recomputes the tile from the saved lse, and accumulates dq; its
 *            group-0 blocks also sum the parameter gradients of their tiles into a per-block
 *            partial (doubles) in a workspace.
 *   dk/dv    grid (B · key tiles, head groups): each block loops over the query blocks that see
 *            its key tile and accumulates dk and dv.
 *   reduce   one thread per parameter-gradient element: the blocks' partials summed in block
 *            order, added to the gradient.
 * Every output element is written by exactly one block and every sum runs in a fixed order,
 * with no atomics: results are bitwise reproducible. The price is that the backward recomputes
 * each tile twice (dq and dk/dv), and a head group recomputes it once more.
 *
 * Shared memory. The planner (attention_tiling.h) fits the layout into the device's opt-in limit
 * (163 KB on sm_80, 227 KB on sm_90), preferring one head group, then 8 or 4 heads staged at a
 * time and f's hidden layer over 256 or 128 pairs at once. At H = 12, D = 64, W = 32 (the
 * paper's model; ALiBi, FIRE within 4 KB of it), the layouts come to (KB; head groups × staged
 * heads × pairs per pass of f):
 *                forward              dq                    dk/dv
 *   fp32, sm_80  153  (1 × 4 × 128)   158  (1 × 2 × 64)     152  (2 × 2 × 64)
 *   fp32, sm_90  201  (1 × 8 × 256)   222  (1 × 8 × 128)    216  (1 × 4 × 64)
 *   bf16, sm_80  156  (1 × 4 × 128)   152  (1 × 2 × 32)     161  (2 × 2 × 64)
 *   bf16, sm_90  204  (1 × 8 × 256)   221  (1 × 8 × 128)    223  (1 × 4 × 64)
 * The biggest items are the [2H, 256] float tile X = [S; B] (32 KB at H = 12), the logits, P, dP
 * and dA of the tile ([heads, 256] floats), f's hidden layer and its gradient ([pairs, W]
 * floats) and the accumulators (O, dq, or dk and dv: [heads, 16, D] floats, 48 KB each at
 * H = 12, D = 64); bf16 mode adds bf16 copies of the GEMM operands. Only the largest backward
 * shapes (H = 32, D = 128, W = 64) do not fit sm_80 and are refused there with a message. One
 * block of 256 threads per SM.
 *
 * Precision. fp32 mode runs every GEMM on CUDA cores in float; bf16 mode runs them on tensor
 * cores (nvcuda::wmma, bf16 operands, fp32 accumulation). In both, softmax statistics, f's and
 * g's activations, the position biases and every reduction are float (the parameter gradients'
 * sums over tiles and blocks double), and both run the same code on the same padded buffers.
 *
 * Shapes. Any B, N ≥ 1, kv_len ≥ N; H ≤ 32; any D ≤ 128 (padded to a multiple of 16); f's W ≤
 * 64; g's width ≤ 64; strided q, k, v, and a local head range (attention_fused_args.h checks).
 */
#include <cuda_runtime.h>

#include "kernels/cuda/attention_fused_launch.h"
#include "kernels/cuda/attention_tile.cuh"
#include "kernels/cuda/cuda_check.h"

namespace dape::cuda {
namespace {

namespace tiling = dape::attention_tiling;

// One block per SM (shared memory allows no more at the paper's shapes): __launch_bounds__ says
// so, which lets ptxas use the registers it needs instead of spilling.
template <class Mode>
__global__ void __launch_bounds__(tiling::kThreads, 1)
    attention_forward_kernel(const __grid_constant__ AttentionKernelParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  tile::forward_block<Mode>(tile::DeviceBlock{}, p, smem, static_cast<int>(blockIdx.x),
                            static_cast<int>(blockIdx.y));
}

template <class Mode>
__global__ void __launch_bounds__(tiling::kThreads, 1)
    attention_dq_kernel(const __grid_constant__ AttentionKernelParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  tile::dq_block<Mode>(tile::DeviceBlock{}, p, smem, static_cast<int>(blockIdx.x),
                       static_cast<int>(gridDim.x), static_cast<int>(blockIdx.y));
}

template <class Mode>
__global__ void __launch_bounds__(tiling::kThreads, 1)
    attention_dkdv_kernel(const __grid_constant__ AttentionKernelParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  tile::dkdv_block<Mode>(tile::DeviceBlock{}, p, smem, static_cast<int>(blockIdx.x),
                         static_cast<int>(blockIdx.y));
}

__global__ void __launch_bounds__(tiling::kThreads)
    attention_reduce_gradients_kernel(const __grid_constant__ AttentionKernelParams p, int blocks) {
  const int i = static_cast<int>(blockIdx.x) * tiling::kThreads + static_cast<int>(threadIdx.x);
  if (i < p.grad.total) tile::reduce_gradient(p, i, blocks);
}

// Lets `kernel` use the layout's dynamic shared memory (above 48 KB needs the opt-in).
template <class Kernel>
void allow_shared_memory(Kernel kernel, const tiling::TileLayout& layout) {
  DAPE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(layout.bytes)));
}

template <class Mode>
void forward(const AttentionKernelParams& p, cudaStream_t stream) {
  const tiling::TileLayout& L = p.layout;
  allow_shared_memory(attention_forward_kernel<Mode>, L);
  const dim3 grid(static_cast<unsigned>(forward_blocks(p)), static_cast<unsigned>(L.groups));
  attention_forward_kernel<Mode><<<grid, tiling::kThreads, L.bytes, stream>>>(p);
  DAPE_CUDA_LAUNCHED("attention_forward_kernel");
}

template <class Mode>
void backward(const AttentionKernelParams& dq, const AttentionKernelParams& dkdv,
              cudaStream_t stream) {
  allow_shared_memory(attention_dq_kernel<Mode>, dq.layout);
  allow_shared_memory(attention_dkdv_kernel<Mode>, dkdv.layout);
  const int blocks = dq_blocks(dq);
  const int64_t total = dq.grad.total;
  AttentionKernelParams with_partials = dq;
  if (total > 0) {
    void* workspace = nullptr;
    DAPE_CUDA_CHECK(
        cudaMallocAsync(&workspace, static_cast<size_t>(blocks * total) * sizeof(double), stream));
    with_partials.partials = static_cast<double*>(workspace);
  }
  // The workspace goes back to the pool on every path, errors included (enqueued on the stream,
  // after the kernels that use it).
  struct Release {
    void* p;
    cudaStream_t s;
    ~Release() {
      if (p != nullptr) (void)cudaFreeAsync(p, s);
    }
  } release{with_partials.partials, stream};

  const dim3 dq_grid(static_cast<unsigned>(blocks), static_cast<unsigned>(dq.layout.groups));
  attention_dq_kernel<Mode><<<dq_grid, tiling::kThreads, dq.layout.bytes, stream>>>(with_partials);
  DAPE_CUDA_LAUNCHED("attention_dq_kernel");
  const dim3 dkdv_grid(static_cast<unsigned>(dkdv_blocks(dkdv)),
                       static_cast<unsigned>(dkdv.layout.groups));
  attention_dkdv_kernel<Mode><<<dkdv_grid, tiling::kThreads, dkdv.layout.bytes, stream>>>(dkdv);
  DAPE_CUDA_LAUNCHED("attention_dkdv_kernel");
  if (total > 0) {
    const unsigned reduce_blocks =
        static_cast<unsigned>(tiling::ceil_div(static_cast<int>(total), tiling::kThreads));
    attention_reduce_gradients_kernel<<<reduce_blocks, tiling::kThreads, 0, stream>>>(with_partials,
                                                                                      blocks);
    DAPE_CUDA_LAUNCHED("attention_reduce_gradients_kernel");
  }
}

}  // namespace

void launch_attention_forward(const AttentionKernelParams& p, cudaStream_t stream) {
  if (p.layout.bf16)
    forward<tile::Bf16Mode>(p, stream);
  else
    forward<tile::Fp32Mode>(p, stream);
}

void launch_attention_backward(const AttentionKernelParams& dq, const AttentionKernelParams& dkdv,
                               cudaStream_t stream) {
  if (dq.layout.bf16)
    backward<tile::Bf16Mode>(dq, dkdv, stream);
  else
    backward<tile::Fp32Mode>(dq, dkdv, stream);
}

}  // namespace dape::cuda
