// CUDA twins of kernels/elementwise.h (CPU twins: kernels/cpu/elementwise.cpp). scale and
// sum_squares are list ops in clip.cu.
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/twins.h"

namespace fe::kernels::cuda {
namespace {

template <class T>
inline constexpr bool kIsFloat = !std::is_integral_v<T>;

// dst = src element by element, converted as the CPU converts (through fp32 to bf16 and f16).
template <class Dst, class Src>
__global__ void convert_kernel(Table<2> table) {
  constexpr int P = kPack<Dst> < kPack<Src> ? kPack<Dst> : kPack<Src>;
  for_each_chunk(table, [&](const Entry<2>& e, int64_t chunk) {
    Dst* dst = static_cast<Dst*>(e.ptr[0]);
    const Src* src = static_cast<const Src*>(e.ptr[1]);
    for_each_pack_of_chunk<P>(e, chunk, [&](auto width, int64_t i) {
      constexpr int W = decltype(width)::value;
      const Pack<Src, W> in = load_pack<W>(src + i);
      Pack<Dst, W> out;
#pragma unroll
      for (int k = 0; k < W; ++k) out.v[k] = narrow<Dst>(widen(in.v[k]));
      store_pack<W>(dst + i, out);
    });
  });
}

// Every element of dst set to one bit pattern; U is an unsigned integer of the element's size.
template <class U>
__global__ void fill_kernel(Table<1> table, U bits) {
  for_each_chunk(table, [&](const Entry<1>& e, int64_t chunk) {
    U* dst = static_cast<U*>(e.ptr[0]);
    for_each_pack_of_chunk<kPack<U>>(e, chunk, [&](auto width, int64_t i) {
      constexpr int W = decltype(width)::value;
      Pack<U, W> pack;
#pragma unroll
      for (int k = 0; k < W; ++k) pack.v[k] = bits;
      store_pack<W>(dst + i, pack);
    });
  });
}

template <class T>
__global__ void axpy_kernel(Table<2> table, float alpha) {
  for_each_chunk(table, [&](const Entry<2>& e, int64_t chunk) {
    T* y = static_cast<T*>(e.ptr[0]);
    const T* x = static_cast<const T*>(e.ptr[1]);
    for_each_pack_of_chunk<kPack<T>>(e, chunk, [&](auto width, int64_t i) {
      constexpr int W = decltype(width)::value;
      float vy[W], vx[W];
      load<W>(y + i, vy);
      load<W>(x + i, vx);
#pragma unroll
      for (int k = 0; k < W; ++k) vy[k] += alpha * vx[k];
      store<W>(y + i, vy);
    });
  });
}

}  // namespace

void copy(const CopyArgs& a) {
  const View &dst = a.dst, &src = a.src;
  if (dst.data == src.data || src.nbytes() == 0) return;
  const bool to_gpu = dst.device == Device::cuda, from_gpu = src.device == Device::cuda;
  const cudaMemcpyKind kind = to_gpu ? (from_gpu ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                     : cudaMemcpyDeviceToHost;
  FE_CUDA_CHECK(cudaMemcpy(dst.data, src.data, src.nbytes(), kind));
}

void convert(const ConvertArgs& a) {
  const View &dst = a.dst, &src = a.src;
  const DeviceTable<2> table({&dst, &src}, 1);
  if (table.empty()) return;
  with_any_type(dst.dtype, [&](auto dst_type) {
    with_any_type(src.dtype, [&](auto src_type) {
      using Dst = decltype(dst_type);
      using Src = decltype(src_type);
      // The public op converts floats to floats and integers to integers, and copies equal dtypes.
      if constexpr (kIsFloat<Dst> == kIsFloat<Src> && !std::is_same_v<Dst, Src>) {
        convert_kernel<Dst, Src><<<table.grid(), kBlock>>>(table.table());
        FE_CUDA_CHECK(cudaGetLastError());
      }
    });
  });
}

void fill(const FillArgs& a) {
  const View& dst = a.dst;
  uint64_t element_bits = 0;  // the value in dst's dtype, as the CPU twin stores it (little-endian)
  cpu::fill(FillArgs{View{&element_bits, dst.dtype, Shape{1}, Device::cpu}, a.value});
  if (element_bits == 0) {  // all-zero bits are 0 in every dtype
    if (dst.nbytes() > 0) FE_CUDA_CHECK(cudaMemsetAsync(dst.data, 0, dst.nbytes(), 0));
    return;
  }
  const DeviceTable<1> table({&dst}, 1);
  if (table.empty()) return;
  switch (dtype_size(dst.dtype)) {
    case 2: fill_kernel<<<table.grid(), kBlock>>>(table.table(), static_cast<uint16_t>(element_bits)); break;
    case 4: fill_kernel<<<table.grid(), kBlock>>>(table.table(), static_cast<uint32_t>(element_bits)); break;
    default: fill_kernel<<<table.grid(), kBlock>>>(table.table(), element_bits); break;
  }
  FE_CUDA_CHECK(cudaGetLastError());
}

void axpy(const AxpyArgs& a) {
  const View &y = a.y, &x = a.x;
  const double alpha = a.alpha;
  const DeviceTable<2> table({&y, &x}, 1);
  if (table.empty()) return;
  with_float_type(y.dtype, [&](auto type) {
    axpy_kernel<decltype(type)><<<table.grid(), kBlock>>>(table.table(), static_cast<float>(alpha));
    FE_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace fe::kernels::cuda
