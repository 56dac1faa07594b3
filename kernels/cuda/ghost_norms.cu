// CUDA twin of kernels::lora_per_example_sq_norms (kernels/linear.h; CPU twin in
// kernels/cpu/linear.cpp): the squared L2 norm of each example's LoRA gradient, for DP-SGD.
//
// The CPU twin evaluates Σ_{t,t'} (u_t·u_t')(v_t·v_t') from two T×T Gram matrices, which costs
// T²·(cols_u + cols_v) per example. That quantity is ‖Σ_t u_tᵀ v_t‖²_F = ‖U_bᵀ V_b‖²_F, and for LoRA
// one side of each product is the rank r (V_b = xa_b [T, r] for dB, dxa_b [T, r] for dA), so the
// per-example gradient U_bᵀ V_b is only [cols, r]: forming it tile by tile costs T·cols·r per
// example, a factor T/(2r) less than the Gram matrices (16× for T = 512, r = 16), and it is never
// stored. Same value, cheaper and without the Gram form's cancellations:
//   ‖dB_b‖² = scale²·‖dy_bᵀ xa_b‖²,   ‖dA_b‖² = ‖x_bᵀ dxa_b‖²,   dxa = scale·dy·B.
//
// Three kernels, no atomics, the same bits on every run:
//  1. dxa = scale·dy·B in fp32 ([M, r] scratch): through cuBLASLt (gemm) when dy and B share a
//     dtype, as linear_backward computes it; else dxa_kernel, a warp per (row, chunk of 16 of r),
//     lanes striding over `out`, warp butterfly sums.
//  2. example_grad_sq_kernel: block (128 columns of U, chunk of 16 of r, example b) accumulates its
//     [128, 16] tile of U_bᵀ V_b in fp32 registers over the example's T rows (V's rows staged in
//     shared memory 64 at a time, U read coalesced along the columns), then squares and sums it
//     in fp64 (fixed-order block sum) into one partial per block.
//  3. finish_kernel: a thread per example adds its partials in a fixed order (fp64), scales the dB
//     part by scale², and adds the total to sq_norms[b] (on the GPU), or to a scratch vector that
//     the host adds to sq_norms when that lives in host memory (the engine keeps it there).
//
// Expected cost: ~M·r·(2·out + in) fp32 FMAs on the CUDA cores plus reading dy twice and x once
// (bf16 or f32) — for Llama-7B shapes, M = 4096, r = 16, out = in = 4096, about 0.8 GFMA, well
// under a millisecond; for MLP projections (11008) about 2.5×. Parallelism is
// ⌈cols/128⌉·⌈r/16⌉·B blocks, low (e.g. 32 blocks for cols = 4096, r = 16, B = 1) for a single
// long example, where each block walks all T rows: a split over T with a second reduction would
// help there.
#include "kernels/cuda/common.cuh"
#include "kernels/twins.h"

namespace fe::kernels::cuda {
namespace {

inline constexpr int kChunk = 16;        // columns of r per warp (dxa) or per block (norms)
inline constexpr int kNormThreads = 128;  // columns of U per block
inline constexpr int kTileRows = 64;      // rows of V staged in shared memory at once

__device__ inline int64_t global_warp() {
  return (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
}
__device__ inline int64_t warp_total() { return static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp; }

// dxa[m, j] = scale·Σ_k dy[m, k]·B[k, j] with B [out, rank].
template <class T, class TW>
__global__ void dxa_kernel(float* dxa, const T* dy, const TW* b, int64_t rows, int64_t out, int rank, float scale) {
  const int chunks = (rank + kChunk - 1) / kChunk;
  const int lane = threadIdx.x % kWarp;
  for (int64_t w = global_warp(); w < rows * chunks; w += warp_total()) {
    const int64_t row = w / chunks;
    const int j0 = static_cast<int>(w % chunks) * kChunk;
    const int jn = min(kChunk, rank - j0);
    float acc[kChunk] = {};
    const T* dyr = dy + row * out;
    for (int64_t k = lane; k < out; k += kWarp) {
      const float d = widen(dyr[k]);
      const TW* bk = b + k * rank + j0;
#pragma unroll
      for (int j = 0; j < kChunk; ++j)
        if (j < jn) acc[j] += d * widen(bk[j]);
    }
#pragma unroll
    for (int j = 0; j < kChunk; ++j) acc[j] = warp_sum(acc[j]);
    if (lane == 0)
#pragma unroll
      for (int j = 0; j < kChunk; ++j)
        if (j < jn) dxa[row * rank + j0 + j] = scale * acc[j];
  }
}

// partials[(b·chunks + chunk)·tiles + tile] = Σ over the block's [128 columns, 16 of r] tile of
// (Σ_t U[b·T + t, c]·V[b·T + t, j])², with U [M, cols] and V [M, rank].
template <class TU, class TV>
__global__ void __launch_bounds__(kNormThreads)
    example_grad_sq_kernel(double* partials, const TU* u, int64_t cols, const TV* v, int rank,
                           int64_t rows_per_example, int64_t examples) {
  __shared__ __align__(16) float vs[kTileRows][kChunk];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kNormThreads + threadIdx.x;
  const int j0 = blockIdx.y * kChunk;
  const int jn = min(kChunk, rank - j0);
  for (int64_t b = blockIdx.z; b < examples; b += gridDim.z) {
    const int64_t first = b * rows_per_example;
    float acc[kChunk] = {};
    for (int64_t t0 = 0; t0 < rows_per_example; t0 += kTileRows) {
      const int tn = static_cast<int>(rows_per_example - t0 < kTileRows ? rows_per_example - t0 : kTileRows);
      __syncthreads();  // the previous tile has been used
      for (int e = threadIdx.x; e < kTileRows * kChunk; e += kNormThreads) {
        const int tt = e / kChunk, j = e % kChunk;
        vs[tt][j] = tt < tn && j < jn ? static_cast<float>(widen(v[(first + t0 + tt) * rank + j0 + j])) : 0.0f;
      }
      __syncthreads();
      if (col < cols) {
        const TU* ur = u + (first + t0) * cols + col;
#pragma unroll 4
        for (int tt = 0; tt < tn; ++tt) {
          const float x = widen(ur[tt * cols]);
#pragma unroll
          for (int j = 0; j < kChunk; ++j) acc[j] += x * vs[tt][j];
        }
      }
    }
    double sq = 0;  // padded columns of r hold 0
#pragma unroll
    for (int j = 0; j < kChunk; ++j) sq += static_cast<double>(acc[j]) * acc[j];
    sq = block_sum<double, kNormThreads>(sq);
    if (threadIdx.x == 0) partials[(b * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x] = sq;
  }
}

// out[b] (+)= scale²·Σ partials_db[b] + Σ partials_da[b], each sum in order.
__global__ void finish_kernel(double* out, bool accumulate, const double* partials_db, int64_t per_example_db,
                              const double* partials_da, int64_t per_example_da, int64_t examples,
                              double scale_sq) {
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < examples;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double db = 0, da = 0;
    for (int64_t i = 0; i < per_example_db; ++i) db += partials_db[b * per_example_db + i];
    for (int64_t i = 0; i < per_example_da; ++i) da += partials_da[b * per_example_da + i];
    const double total = scale_sq * db + da;
    out[b] = accumulate ? out[b] + total : total;
  }
}

template <class TU, class TV>
void launch_example_grad_sq(double* partials, const TU* u, int64_t cols, const TV* v, int rank,
                            int64_t rows_per_example, int64_t examples) {
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, kNormThreads)), static_cast<unsigned>(ceil_div(rank, kChunk)),
                  static_cast<unsigned>(std::min<int64_t>(examples, 65535)));
  example_grad_sq_kernel<TU, TV><<<grid, kNormThreads>>>(partials, u, cols, v, rank, rows_per_example, examples);
  FE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void lora_per_example_sq_norms(const LoraSqNormsArgs& a) {
  const View &sq_norms = a.sq_norms, &dy = a.dy, &x = a.x, &xa = a.xa, &lora_b = a.lora.b;
  const double scale = a.lora.scale;
  const int64_t examples = sq_norms.numel(), rows = dy.shape[0], out = dy.shape[1], in = x.shape[1];
  const int rank = static_cast<int>(xa.shape[1]);
  if (examples == 0 || rows == 0 || rank == 0) return;  // every example's gradient is zero
  const int64_t rows_per_example = rows / examples;
  const int64_t chunks = ceil_div(rank, kChunk);
  const int64_t db_per_example = ceil_div(out, kNormThreads) * chunks;
  const int64_t da_per_example = ceil_div(in, kNormThreads) * chunks;
  const bool on_device = sq_norms.device == Device::cuda;
  // Scratch: partials for dB and dA, the totals (host sq_norms only), then dxa (256-byte aligned
  // for cuBLASLt).
  const int64_t doubles = examples * (db_per_example + da_per_example) + (on_device ? 0 : examples);
  const size_t dxa_offset = (static_cast<size_t>(doubles) * sizeof(double) + 255) / 256 * 256;
  const DeviceScratch scratch = device_scratch(dxa_offset + rows * rank * sizeof(float));
  double* partials_db = static_cast<double*>(scratch.get());
  double* partials_da = partials_db + examples * db_per_example;
  double* totals = on_device ? sq_norms.as<double>() : partials_da + examples * da_per_example;
  float* dxa = reinterpret_cast<float*>(static_cast<char*>(scratch.get()) + dxa_offset);
  if (dy.dtype == lora_b.dtype)
    gemm(GemmArgs{View{dxa, DType::f32, Shape{rows, rank}, Device::cuda}, dy, false, lora_b, false, scale, 0.0});

  with_float_type(dy.dtype, [&](auto type) {
    using T = decltype(type);
    if (dy.dtype != lora_b.dtype)
      with_float_type(lora_b.dtype, [&](auto weight_type) {
        using TW = decltype(weight_type);
        dxa_kernel<T, TW><<<grid_for(rows * chunks * kWarp), kBlock>>>(dxa, dy.as<T>(), lora_b.as<TW>(), rows, out,
                                                                        rank, static_cast<float>(scale));
        FE_CUDA_CHECK(cudaGetLastError());
      });
    launch_example_grad_sq<T, T>(partials_db, dy.as<T>(), out, xa.as<T>(), rank, rows_per_example, examples);
    launch_example_grad_sq<T, float>(partials_da, x.as<T>(), in, dxa, rank, rows_per_example, examples);
  });
  finish_kernel<<<grid_for(examples), kBlock>>>(totals, on_device, partials_db, db_per_example, partials_da,
                                                da_per_example, examples, scale * scale);
  FE_CUDA_CHECK(cudaGetLastError());
  if (on_device) return;
  std::unique_ptr<double[]> host(new double[examples]);
  FE_CUDA_CHECK(cudaMemcpy(host.get(), totals, examples * sizeof(double), cudaMemcpyDeviceToHost));
  for (int64_t b = 0; b < examples; ++b) sq_norms.as<double>()[b] += host[b];
}

}  // namespace fe::kernels::cuda
