// CPU twins of kernels/elementwise.h (CUDA twins: kernels/cuda/elementwise.cu). scale and
// sum_squares are list ops in clip.cpp.
#include <cstring>

#include "kernels/cpu/common.h"
#include "kernels/half.h"
#include "kernels/twins.h"

namespace fe::kernels::cpu {
namespace {

double load(const View& v, int64_t i) {
  switch (v.dtype) {
    case DType::f32:
      return v.as<float>()[i];
    case DType::f64:
      return v.as<double>()[i];
    case DType::bf16:
      return bf16_to_f32(v.as<uint16_t>()[i]);
    case DType::f16:
      return f16_to_f32(v.as<uint16_t>()[i]);
    case DType::i32:
      return v.as<int32_t>()[i];
    case DType::i64:
      return static_cast<double>(v.as<int64_t>()[i]);
  }
  return 0;
}

void store(const View& v, int64_t i, double x) {
  switch (v.dtype) {
    case DType::f32:
      v.as<float>()[i] = static_cast<float>(x);
      return;
    case DType::f64:
      v.as<double>()[i] = x;
      return;
    case DType::bf16:
      v.as<uint16_t>()[i] = f32_to_bf16(static_cast<float>(x));
      return;
    case DType::f16:
      v.as<uint16_t>()[i] = f32_to_f16(static_cast<float>(x));
      return;
    case DType::i32:
      v.as<int32_t>()[i] = static_cast<int32_t>(x);
      return;
    case DType::i64:
      v.as<int64_t>()[i] = static_cast<int64_t>(x);
      return;
  }
}

}  // namespace

void copy(const CopyArgs& a) {
  if (a.dst.data != a.src.data) std::memcpy(a.dst.data, a.src.data, a.src.nbytes());
}

void convert(const ConvertArgs& a) {
  const View &dst = a.dst, &src = a.src;
  const int64_t n = dst.numel();
  if (dst.dtype == DType::i64 || src.dtype == DType::i64) {  // exact, not through double
    if (dst.dtype == DType::i64)
      for (int64_t i = 0; i < n; ++i) dst.as<int64_t>()[i] = src.as<int32_t>()[i];
    else
      for (int64_t i = 0; i < n; ++i) dst.as<int32_t>()[i] = static_cast<int32_t>(src.as<int64_t>()[i]);
    return;
  }
#pragma omp parallel for schedule(static) if (n > kParallelWork)
  for (int64_t i = 0; i < n; ++i) store(dst, i, load(src, i));
}

void fill(const FillArgs& a) {
  if (a.value == 0.0) {
    std::memset(a.dst.data, 0, a.dst.nbytes());  // all-zero bits are 0 in every dtype
    return;
  }
  for (int64_t i = 0; i < a.dst.numel(); ++i) store(a.dst, i, a.value);
}

void axpy(const AxpyArgs& a) {
  with_float_type(a.y.dtype, [&]<class T>(T) {
    T* py = a.y.as<T>();
    const T* px = a.x.as<T>();
    const T alpha = static_cast<T>(a.alpha);
    const int64_t n = a.y.numel();
#pragma omp parallel for schedule(static) if (n > kParallelWork)
    for (int64_t i = 0; i < n; ++i) py[i] += alpha * px[i];
  });
}

}  // namespace fe::kernels::cpu
