// CUDA twin of kernels/adamw.h (CPU twin: kernels/cpu/adamw.cpp): every tensor of the list in one
// launch, fp32 math on f32 or bf16 storage.
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/twins.h"

namespace fe::kernels::cuda {
namespace {

struct AdamWConstants {
  float lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, decay, bias1, bias2;
};

template <class T>
__global__ void adamw_kernel(Table<4> table, AdamWConstants c) {
  for_each_chunk(table, [&](const Entry<4>& e, int64_t chunk) {
    T* param = static_cast<T*>(e.ptr[0]);
    const T* grad = static_cast<const T*>(e.ptr[1]);
    T* m = static_cast<T*>(e.ptr[2]);
    T* v = static_cast<T*>(e.ptr[3]);
    for_each_pack_of_chunk<kPack<T>>(e, chunk, [&](auto width, int64_t i) {
      constexpr int W = decltype(width)::value;
      float p[W], g[W], vm[W], vv[W];
      load<W>(param + i, p);
      load<W>(grad + i, g);
      load<W>(m + i, vm);
      load<W>(v + i, vv);
#pragma unroll
      for (int k = 0; k < W; ++k) {
        p[k] -= c.decay * p[k];
        vm[k] = c.beta1 * vm[k] + c.one_minus_beta1 * g[k];
        vv[k] = c.beta2 * vv[k] + c.one_minus_beta2 * g[k] * g[k];
        p[k] -= c.lr * (vm[k] / c.bias1) / (sqrtf(vv[k] / c.bias2) + c.eps);
      }
      store<W>(param + i, p);
      store<W>(m + i, vm);
      store<W>(v + i, vv);
    });
  });
}

}  // namespace

void adamw_step(const AdamWArgs& a) {
  const AdamWStep& s = a.step;
  const DeviceTable<4> table({a.params, a.grads, a.m, a.v}, a.count);
  if (table.empty()) return;
  const AdamWConstants c{static_cast<float>(s.lr), static_cast<float>(s.beta1),
                         static_cast<float>(s.beta2), static_cast<float>(1 - s.beta1),
                         static_cast<float>(1 - s.beta2), static_cast<float>(s.eps),
                         static_cast<float>(s.lr * s.weight_decay), static_cast<float>(s.bias1),
                         static_cast<float>(s.bias2)};
  with_float_type(a.params[0].dtype, [&](auto type) {
    adamw_kernel<decltype(type)><<<table.grid(), kBlock>>>(table.table(), c);
    FE_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace fe::kernels::cuda
