// CUDA twin of kernels/swiglu.h (CPU twin: kernels/cpu/swiglu.cpp), fp32 math, elementwise over a
// list of one (kernels/cuda/multi_tensor.cuh).
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/twins.h"

namespace fe::kernels::cuda {
namespace {

__device__ inline float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

// ptr: out, gate, up.
template <class T>
__global__ void swiglu_forward_kernel(Table<3> table) {
  for_each_chunk(table, [&](const Entry<3>& e, int64_t chunk) {
    T* out = static_cast<T*>(e.ptr[0]);
    const T* gate = static_cast<const T*>(e.ptr[1]);
    const T* up = static_cast<const T*>(e.ptr[2]);
    for_each_pack_of_chunk<kPack<T>>(e, chunk, [&](auto width, int64_t i) {
      constexpr int W = decltype(width)::value;
      float g[W], u[W];
      load<W>(gate + i, g);
      load<W>(up + i, u);
#pragma unroll
      for (int k = 0; k < W; ++k) g[k] = g[k] * sigmoid(g[k]) * u[k];
      store<W>(out + i, g);
    });
  });
}

// ptr: dgate, dup, dout, gate, up. d silu(g)/dg = s·(1 + g·(1 − s)) with s = sigmoid(g).
template <class T>
__global__ void swiglu_backward_kernel(Table<5> table) {
  for_each_chunk(table, [&](const Entry<5>& e, int64_t chunk) {
    T* dgate = static_cast<T*>(e.ptr[0]);
    T* dup = static_cast<T*>(e.ptr[1]);
    const T* dout = static_cast<const T*>(e.ptr[2]);
    const T* gate = static_cast<const T*>(e.ptr[3]);
    const T* up = static_cast<const T*>(e.ptr[4]);
    for_each_pack_of_chunk<kPack<T>>(e, chunk, [&](auto width, int64_t i) {
      constexpr int W = decltype(width)::value;
      float d[W], g[W], u[W], dg[W], du[W];
      load<W>(dout + i, d);
      load<W>(gate + i, g);
      load<W>(up + i, u);
#pragma unroll
      for (int k = 0; k < W; ++k) {
        const float s = sigmoid(g[k]);
        du[k] = d[k] * g[k] * s;
        dg[k] = d[k] * u[k] * s * (1.0f + g[k] * (1.0f - s));
      }
      store<W>(dgate + i, dg);
      store<W>(dup + i, du);
    });
  });
}

}  // namespace

void swiglu_forward(const SwiGluForwardArgs& a) {
  const View &out = a.out, &gate = a.gate, &up = a.up;
  const DeviceTable<3> table({&out, &gate, &up}, 1);
  if (table.empty()) return;
  with_float_type(gate.dtype, [&](auto type) {
    swiglu_forward_kernel<decltype(type)><<<table.grid(), kBlock>>>(table.table());
    FE_CUDA_CHECK(cudaGetLastError());
  });
}

void swiglu_backward(const SwiGluBackwardArgs& a) {
  const View &dgate = a.dgate, &dup = a.dup, &dout = a.dout, &gate = a.gate, &up = a.up;
  const DeviceTable<5> table({&dgate, &dup, &dout, &gate, &up}, 1);
  if (table.empty()) return;
  with_float_type(gate.dtype, [&](auto type) {
    swiglu_backward_kernel<decltype(type)><<<table.grid(), kBlock>>>(table.table());
    FE_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace fe::kernels::cuda
