// kernels/cuda/common.cuh — what the CUDA kernel files share: storage types and their fp32 math,
// 16-byte packs, loops over packs, launch sizes, dtype dispatch, deterministic block sums and
// stream-ordered scratch memory. Everything runs on the default stream.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "kernels/cuda/check.h"
#include "kernels/view.h"

namespace fe::kernels::cuda {

using bf16 = __nv_bfloat16;
using f16 = __half;

// Threads per block of the memory-bound kernels; 2048 / kBlock blocks fill an SM.
inline constexpr int kBlock = 256;
inline constexpr int kWarp = 32;

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Elements of T in one 16-byte (128-bit) load or store.
template <class T>
inline constexpr int kPack = static_cast<int>(16 / sizeof(T));

template <class T, int P>
struct alignas(sizeof(T) * P) Pack {
  T v[P];
};

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// ---- storage ↔ math. 16- and 32-bit floats compute in fp32, f64 in fp64, integers as themselves.
__device__ inline float widen(float x) { return x; }
__device__ inline float widen(bf16 x) { return __bfloat162float(x); }
__device__ inline float widen(f16 x) { return __half2float(x); }
__device__ inline double widen(double x) { return x; }
__device__ inline int32_t widen(int32_t x) { return x; }
__device__ inline int64_t widen(int64_t x) { return x; }

// Rounds to storage type T as the CPU does (kernels/cpu/elementwise.cpp): bf16 and f16 through
// float, round to nearest even.
template <class T, class U>
__device__ T narrow(U x) {
  if constexpr (std::is_same_v<T, bf16>)
    return __float2bfloat16_rn(static_cast<float>(x));
  else if constexpr (std::is_same_v<T, f16>)
    return __float2half_rn(static_cast<float>(x));
  else
    return static_cast<T>(x);
}

template <int P, class T>
__device__ Pack<T, P> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, P>*>(p);
}

template <int P, class T>
__device__ void store_pack(T* p, const Pack<T, P>& pack) {
  *reinterpret_cast<Pack<T, P>*>(p) = pack;
}

// P elements from p into fp32 registers, and back.
template <int P, class T>
__device__ void load(const T* p, float (&out)[P]) {
  const Pack<T, P> pack = load_pack<P>(p);
#pragma unroll
  for (int k = 0; k < P; ++k) out[k] = widen(pack.v[k]);
}

template <int P, class T>
__device__ void store(T* p, const float (&in)[P]) {
  Pack<T, P> pack;
#pragma unroll
  for (int k = 0; k < P; ++k) pack.v[k] = narrow<T>(in[k]);
  store_pack<P>(p, pack);
}

template <int P>
using PackWidth = std::integral_constant<int, P>;

// Calls body(PackWidth<P>{}, i) for the packs of [begin, end) that fall to thread `thread` of
// `threads`: P elements at a time from `begin` when `vector` (the caller guarantees 16-byte
// alignment there), one at a time for the remainder, or for everything when not `vector`.
template <int P, class Body>
__device__ void for_each_pack(int64_t begin, int64_t end, int thread, int threads, bool vector,
                              Body&& body) {
  int64_t rest = begin;
  if (vector) {
    rest = begin + (end - begin) / P * P;
    for (int64_t i = begin + static_cast<int64_t>(thread) * P; i < rest; i += static_cast<int64_t>(threads) * P)
      body(PackWidth<P>{}, i);
  }
  for (int64_t i = rest + thread; i < end; i += threads) body(PackWidth<1>{}, i);
}

// Σ over the warp; every lane gets the same bits (the butterfly adds the same pairs on both sides).
template <class T>
__device__ T warp_sum(T x) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// Σ over a block of kThreads threads in a fixed order; every thread gets the result. Every thread
// of the block must call it.
template <class T, int kThreads = kBlock>
__device__ T block_sum(T x) {
  __shared__ T warp_sums[kThreads / kWarp];
  x = warp_sum(x);
  if (threadIdx.x % kWarp == 0) warp_sums[threadIdx.x / kWarp] = x;
  __syncthreads();
  T total = 0;
#pragma unroll
  for (int w = 0; w < kThreads / kWarp; ++w) total += warp_sums[w];
  __syncthreads();  // warp_sums is reused by the next call
  return total;
}

// Streaming multiprocessors of the current GPU.
inline int sm_count() {
  int device = 0, sms = 0;
  FE_CUDA_CHECK(cudaGetDevice(&device));
  FE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

// Blocks of `threads` threads for a grid-stride loop over `items` items of `per_block` each: one
// full wave of the GPU at most (2048 threads per SM; later blocks would only queue), fewer when
// there is less work.
inline int grid_for(int64_t items, int64_t per_block = kBlock, int threads = kBlock) {
  const int64_t wave = static_cast<int64_t>(sm_count()) * (2048 / threads);
  return static_cast<int>(std::clamp<int64_t>(ceil_div(items, per_block), 1, wave));
}

// Calls fn(T{}) with T the storage type of a dtype the compute kernels take (f32, bf16).
template <class Fn>
void with_float_type(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::f32: fn(float{}); return;
    case DType::bf16: fn(bf16{}); return;
    default: throw Error(std::string("CUDA kernels compute on f32 or bf16, got ") + dtype_name(dtype));
  }
}

// Calls fn(T{}) with T the storage type of any dtype.
template <class Fn>
void with_any_type(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::f32: fn(float{}); return;
    case DType::f64: fn(double{}); return;
    case DType::bf16: fn(bf16{}); return;
    case DType::f16: fn(f16{}); return;
    case DType::i32: fn(int32_t{}); return;
    case DType::i64: fn(int64_t{}); return;
  }
}

// Stream-ordered device memory (cudaMallocAsync's pool: cheap after the first calls), freed in
// stream order when dropped, so kernels launched before the drop may still use it. The free is not
// checked: a destructor cannot throw, and a failed free only leaves the block in the pool.
struct FreeAsync {
  void operator()(void* p) const { (void)cudaFreeAsync(p, 0); }
};
using DeviceScratch = std::unique_ptr<void, FreeAsync>;

inline DeviceScratch device_scratch(size_t bytes) {
  void* p = nullptr;
  FE_CUDA_CHECK(cudaMallocAsync(&p, std::max<size_t>(bytes, 1), 0));
  return DeviceScratch(p);
}

// Column sums Σ_row term(row, col) of a [rows, cols] grid added to out[cols], in a fixed order (the
// same bits on every run, no atomics): pass 1 sums slabs of kSlabRows rows per column (a block is
// 32 columns × kSlabThreadsY row groups, the groups added in order; slabs grid-strided along y),
// pass 2 adds the slabs in slab order. `term` is a device functor float(int64_t row, int64_t col).
inline constexpr int64_t kSlabRows = 256;
inline constexpr int kSlabThreadsY = 8;

template <class Term>
__global__ void column_slab_partials_kernel(float* partials, Term term, int64_t rows, int64_t cols) {
  __shared__ float sums[kSlabThreadsY][kWarp];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kWarp + threadIdx.x;
  for (int64_t slab = blockIdx.y; slab * kSlabRows < rows; slab += gridDim.y) {
    const int64_t last = (slab + 1) * kSlabRows < rows ? (slab + 1) * kSlabRows : rows;
    float acc = 0;
    if (col < cols)
      for (int64_t row = slab * kSlabRows + threadIdx.y; row < last; row += kSlabThreadsY) acc += term(row, col);
    sums[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
      float total = 0;
      for (int t = 0; t < kSlabThreadsY; ++t) total += sums[t][threadIdx.x];
      partials[slab * cols + col] = total;
    }
    __syncthreads();  // sums is refilled for the next slab
  }
}

template <class G>
__global__ void column_slab_finish_kernel(G* out, const float* partials, int64_t slabs, int64_t cols) {
  for (int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; col < cols;
       col += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float total = 0;
    for (int64_t s = 0; s < slabs; ++s) total += partials[s * cols + col];
    out[col] = narrow<G>(widen(out[col]) + total);
  }
}

template <class G, class Term>
void add_column_sums(G* out, Term term, int64_t rows, int64_t cols) {
  if (rows == 0 || cols == 0) return;
  const int64_t slabs = ceil_div(rows, kSlabRows);
  const DeviceScratch scratch = device_scratch(static_cast<size_t>(slabs * cols) * sizeof(float));
  float* partials = static_cast<float*>(scratch.get());
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, kWarp)),
                  static_cast<unsigned>(std::min<int64_t>(slabs, 65535)));  // gridDim.y's limit
  column_slab_partials_kernel<<<grid, dim3(kWarp, kSlabThreadsY)>>>(partials, term, rows, cols);
  FE_CUDA_CHECK(cudaGetLastError());
  column_slab_finish_kernel<G><<<grid_for(cols), kBlock>>>(out, partials, slabs, cols);
  FE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fe::kernels::cuda
