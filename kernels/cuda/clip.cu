// CUDA twins of kernels/clip.h, and of sum_squares and scale from kernels/elementwise.h (a single
// tensor is a list of one). CPU twin: kernels/cpu/clip.cpp.
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/twins.h"
#include "kernels/philox.h"

namespace fe::kernels::cuda {
namespace {

// Pass 1 of Σx² over a list: one partial per chunk (fp32 within a pack, fp64 beyond, fixed order).
template <class T>
__global__ void sum_squares_partials_kernel(Table<1> table, double* partials) {
  for_each_chunk(table, [&](const Entry<1>& e, int64_t chunk) {
    const T* x = static_cast<const T*>(e.ptr[0]);
    double acc = 0;
    for_each_pack_of_chunk<kPack<T>>(e, chunk, [&](auto width, int64_t i) {
      constexpr int W = decltype(width)::value;
      float v[W];
      load<W>(x + i, v);
      float s = 0;
#pragma unroll
      for (int k = 0; k < W; ++k) s += v[k] * v[k];
      acc += s;
    });
    const double total = block_sum(acc);
    if (threadIdx.x == 0) partials[chunk] = total;
  });
}

// Pass 2: one block adds the partials in a fixed order.
__global__ void sum_partials_kernel(const double* partials, int64_t count, double* out) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  const double total = block_sum(acc);
  if (threadIdx.x == 0) *out = total;
}

template <class T>
__global__ void scale_kernel(Table<1> table, float alpha) {
  for_each_chunk(table, [&](const Entry<1>& e, int64_t chunk) {
    T* x = static_cast<T*>(e.ptr[0]);
    for_each_pack_of_chunk<kPack<T>>(e, chunk, [&](auto width, int64_t i) {
      constexpr int W = decltype(width)::value;
      float v[W];
      load<W>(x + i, v);
#pragma unroll
      for (int k = 0; k < W; ++k) v[k] *= alpha;
      store<W>(x + i, v);
    });
  });
}

// Thread by thread over Philox blocks: block c holds normals 4c..4c+3, for elements 4c − offset ...
// A group wholly inside x is one 4-element load and store when `vector` (offset % 4 == 0 and x
// aligned to 4 elements), else the group's elements go one by one.
template <class T>
__global__ void gaussian_noise_kernel(T* x, int64_t n, float stddev, uint64_t seed, uint64_t offset,
                                      bool vector) {
  const uint64_t first = offset / 4, last = (offset + n - 1) / 4;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t block = first + blockIdx.x * blockDim.x + threadIdx.x; block <= last; block += stride) {
    float z[4];
    philox::normal4(seed, block, z);
    const int64_t i0 = static_cast<int64_t>(block * 4 - offset);  // negative in a first partial group
    if (vector && i0 >= 0 && i0 + 4 <= n) {
      float v[4];
      load<4>(x + i0, v);
#pragma unroll
      for (int k = 0; k < 4; ++k) v[k] += stddev * z[k];
      store<4>(x + i0, v);
      continue;
    }
    for (int k = 0; k < 4; ++k) {
      const int64_t i = i0 + k;
      if (i >= 0 && i < n) x[i] = narrow<T>(widen(x[i]) + stddev * z[k]);
    }
  }
}

}  // namespace

double sum_squares(const ViewList& list) {
  const View* xs = list.views;
  const size_t count = list.count;
  const DeviceTable<1> table({xs}, count);
  if (table.empty()) return 0.0;
  const int64_t chunks = table.table().chunks;
  const DeviceScratch scratch = device_scratch((chunks + 1) * sizeof(double));
  double* partials = static_cast<double*>(scratch.get());
  with_float_type(xs[0].dtype, [&](auto type) {
    sum_squares_partials_kernel<decltype(type)><<<table.grid(), kBlock>>>(table.table(), partials);
    FE_CUDA_CHECK(cudaGetLastError());
  });
  sum_partials_kernel<<<1, kBlock>>>(partials, chunks, partials + chunks);
  FE_CUDA_CHECK(cudaGetLastError());
  double total = 0;
  FE_CUDA_CHECK(cudaMemcpy(&total, partials + chunks, sizeof(double), cudaMemcpyDeviceToHost));
  return total;
}

void scale_all(const ScaleAllArgs& a) {
  const View* xs = a.xs.views;
  const size_t count = a.xs.count;
  const double alpha = a.alpha;
  const DeviceTable<1> table({xs}, count);
  if (table.empty()) return;
  with_float_type(xs[0].dtype, [&](auto type) {
    scale_kernel<decltype(type)><<<table.grid(), kBlock>>>(table.table(), static_cast<float>(alpha));
    FE_CUDA_CHECK(cudaGetLastError());
  });
}

void add_gaussian_noise(const GaussianNoiseArgs& a) {
  const View& x = a.x;
  const double stddev = a.stddev;
  const uint64_t seed = a.seed, offset = a.offset;
  const int64_t n = x.numel();
  if (n == 0) return;
  const int64_t groups = static_cast<int64_t>((offset + n - 1) / 4 - offset / 4 + 1);
  with_float_type(x.dtype, [&](auto type) {
    using T = decltype(type);
    const bool vector = offset % 4 == 0 && reinterpret_cast<uintptr_t>(x.data) % (4 * sizeof(T)) == 0;
    gaussian_noise_kernel<T><<<grid_for(groups), kBlock>>>(x.as<T>(), n, static_cast<float>(stddev), seed,
                                                           offset, vector);
    FE_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace fe::kernels::cuda
