// CUDA twin of kernels/rope.h (CPU twin: kernels/cpu/rope.cpp).
//
// rope_apply: blocks grid-stride over tokens; a token's threads take (head, pack of i) pairs and
// rotate x[i..i+P) with x[i+hd/2..i+hd/2+P). Blocks are as small as a token's work (down to a
// warp, for few KV heads), so small blocks fill the SMs. The token's cos/sin row is read once per
// head from L1. Tables are computed in fp64 like the CPU's, then rounded to the table dtype.
#include "kernels/cuda/common.cuh"
#include "kernels/twins.h"

namespace fe::kernels::cuda {
namespace {

template <class T>
__global__ void rope_tables_kernel(T* cos_table, T* sin_table, const int32_t* positions, const double* inv_freq,
                                   int64_t tokens, int half) {
  const int64_t count = tokens * half;
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < count;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s, c;
    sincos(positions[q / half] * inv_freq[q % half], &s, &c);
    cos_table[q] = narrow<T>(c);
    sin_table[q] = narrow<T>(s);
  }
}

// One token's heads; P elements of each half per work item.
template <int P, class T>
__device__ void rope_token(T* xt, const T* c, const T* s, int heads, int half, float sign) {
  const int packs = half / P;
  for (int q = threadIdx.x; q < heads * packs; q += blockDim.x) {
    T* v = xt + (q / packs) * 2 * half;
    const int i = (q % packs) * P;
    float lo[P], hi[P], vc[P], vs[P];
    load<P>(v + i, lo);
    load<P>(v + i + half, hi);
    load<P>(c + i, vc);
    load<P>(s + i, vs);
#pragma unroll
    for (int k = 0; k < P; ++k) {
      const float sn = sign * vs[k], a = lo[k], b = hi[k];
      lo[k] = a * vc[k] - b * sn;
      hi[k] = b * vc[k] + a * sn;
    }
    store<P>(v + i, lo);
    store<P>(v + i + half, hi);
  }
}

template <class T>
__global__ void rope_apply_kernel(T* x, const T* cos_table, const T* sin_table, int64_t tokens, int heads,
                                  int half, float sign, bool vector) {
  for (int64_t n = blockIdx.x; n < tokens; n += gridDim.x) {
    T* xt = x + n * heads * 2 * half;
    const T* c = cos_table + n * half;
    const T* s = sin_table + n * half;
    if (vector) rope_token<kPack<T>>(xt, c, s, heads, half, sign);
    else rope_token<1>(xt, c, s, heads, half, sign);
  }
}

}  // namespace

void rope_tables(const RopeTablesArgs& a) {
  const View &cos = a.cos, &sin = a.sin, &positions = a.positions, &inv_freq = a.inv_freq;
  const int half = static_cast<int>(inv_freq.numel());
  const int64_t tokens = positions.numel();
  if (tokens * half == 0) return;
  with_float_type(cos.dtype, [&](auto type) {
    using T = decltype(type);
    rope_tables_kernel<T><<<grid_for(tokens * half), kBlock>>>(cos.as<T>(), sin.as<T>(), positions.as<int32_t>(),
                                                               inv_freq.as<double>(), tokens, half);
    FE_CUDA_CHECK(cudaGetLastError());
  });
}

void rope_apply(const RopeApplyArgs& a) {
  const View &x = a.x, &cos = a.cos, &sin = a.sin;
  const bool inverse = a.inverse;
  const int64_t tokens = x.shape[0];
  const int heads = static_cast<int>(x.shape[1]), half = static_cast<int>(x.shape[2] / 2);
  if (x.numel() == 0) return;
  with_float_type(x.dtype, [&](auto type) {
    using T = decltype(type);
    // Packs of P stay inside a half and aligned when half is a multiple of P.
    const bool vector = half % kPack<T> == 0 && aligned16(x.data) && aligned16(cos.data) && aligned16(sin.data);
    const int64_t items = static_cast<int64_t>(heads) * (vector ? half / kPack<T> : half);
    const int threads = static_cast<int>(std::min<int64_t>(kBlock, ceil_div(items, kWarp) * kWarp));
    rope_apply_kernel<T><<<grid_for(tokens, 1, threads), threads>>>(x.as<T>(), cos.as<T>(), sin.as<T>(), tokens,
                                                                    heads, half, inverse ? -1.0f : 1.0f, vector);
    FE_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace fe::kernels::cuda
