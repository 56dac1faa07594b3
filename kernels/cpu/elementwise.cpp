#include "kernels/elementwise.h"

#include <cstring>

#include "kernels/cpu/dispatch.h"
#include "kernels/cuda/ops.h"
#include "kernels/half.h"

namespace fe::kernels {
namespace {

double load(const View& v, int64_t i) {
  switch (v.dtype) {
    case DType::f32: return v.as<float>()[i];
    case DType::f64: return v.as<double>()[i];
    case DType::bf16: return bf16_to_f32(v.as<uint16_t>()[i]);
    case DType::f16: return f16_to_f32(v.as<uint16_t>()[i]);
    case DType::i32: return v.as<int32_t>()[i];
    case DType::i64: return static_cast<double>(v.as<int64_t>()[i]);
  }
  return 0;
}

void store(const View& v, int64_t i, double x) {
  switch (v.dtype) {
    case DType::f32: v.as<float>()[i] = static_cast<float>(x); return;
    case DType::f64: v.as<double>()[i] = x; return;
    case DType::bf16: v.as<uint16_t>()[i] = f32_to_bf16(static_cast<float>(x)); return;
    case DType::f16: v.as<uint16_t>()[i] = f32_to_f16(static_cast<float>(x)); return;
    case DType::i32: v.as<int32_t>()[i] = static_cast<int32_t>(x); return;
    case DType::i64: v.as<int64_t>()[i] = static_cast<int64_t>(x); return;
  }
}

}  // namespace

void copy(const View& dst, const View& src) {
  detail::OpCheck check("copy", {{"dst", &dst}, {"src", &src}});
  check.require(dst.dtype == src.dtype && dst.numel() == src.numel(),
                "dst and src must share a dtype and an element count");
  if (dst.device == Device::cpu && src.device == Device::cpu) {
    if (dst.data != src.data) std::memcpy(dst.data, src.data, src.nbytes());
    return;
  }
  cpu::require_cuda_build(check);
  if constexpr (cpu::kHaveCuda) cuda::copy(dst, src);
}

void convert(const View& dst, const View& src) {
  detail::OpCheck check("convert", {{"dst", &dst}, {"src", &src}});
  check.require(dst.numel() == src.numel(), "element counts differ");
  check.require(is_floating(dst.dtype) == is_floating(src.dtype),
                "converts floats to floats and integers to integers");
  const bool gpu = cpu::on_gpu(check, dst);
  if (dst.dtype == src.dtype) {
    copy(dst, src);
    return;
  }
  if (gpu) {
    if constexpr (cpu::kHaveCuda) cuda::convert(dst, src);
    return;
  }
  if (dst.dtype == DType::i64 || src.dtype == DType::i64) {  // exact, not through double
    const int64_t n = dst.numel();
    if (dst.dtype == DType::i64)
      for (int64_t i = 0; i < n; ++i) dst.as<int64_t>()[i] = src.as<int32_t>()[i];
    else
      for (int64_t i = 0; i < n; ++i) dst.as<int32_t>()[i] = static_cast<int32_t>(src.as<int64_t>()[i]);
    return;
  }
  const int64_t n = dst.numel();
#pragma omp parallel for schedule(static) if (n > cpu::kParallelWork)
  for (int64_t i = 0; i < n; ++i) store(dst, i, load(src, i));
}

void fill(const View& dst, double value) {
  detail::OpCheck check("fill", {{"dst", &dst}});
  if (cpu::on_gpu(check, dst)) {
    uint64_t bits = 0;  // the value in dst's dtype, converted as on the CPU (little-endian)
    store(View{&bits, dst.dtype, Shape{1}, Device::cpu}, 0, value);
    if constexpr (cpu::kHaveCuda) cuda::fill(dst, bits);
    return;
  }
  if (value == 0.0) {
    std::memset(dst.data, 0, dst.nbytes());  // all-zero bits are 0 in every dtype
    return;
  }
  for (int64_t i = 0; i < dst.numel(); ++i) store(dst, i, value);
}

void axpy(const View& y, const View& x, double alpha) {
  detail::OpCheck check("axpy", {{"y", &y}, {"x", &x}});
  check.require(y.shape == x.shape, "shapes differ");
  if (cpu::on_gpu_float(check, y)) {
    if constexpr (cpu::kHaveCuda) cuda::axpy(y, x, alpha);
    return;
  }
  cpu::dispatch_float(check, y, [&]<class T>(T) {
    T* py = y.as<T>();
    const T* px = x.as<T>();
    const T a = static_cast<T>(alpha);
    const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > cpu::kParallelWork)
    for (int64_t i = 0; i < n; ++i) py[i] += a * px[i];
  });
}

void scale(const View& y, double alpha) {
  detail::OpCheck check("scale", {{"y", &y}});
  if (cpu::on_gpu_float(check, y)) {
    if constexpr (cpu::kHaveCuda) cuda::scale(&y, 1, alpha);
    return;
  }
  cpu::dispatch_float(check, y, [&]<class T>(T) {
    T* py = y.as<T>();
    const T a = static_cast<T>(alpha);
    for (int64_t i = 0; i < y.numel(); ++i) py[i] *= a;
  });
}

double sum_squares(const View& x) {
  detail::OpCheck check("sum_squares", {{"x", &x}});
  if (cpu::on_gpu_float(check, x)) {
    if constexpr (cpu::kHaveCuda) return cuda::sum_squares(&x, 1);
  }
  double total = 0;
  cpu::dispatch_float(check, x, [&]<class T>(T) {
    const T* px = x.as<T>();
    for (int64_t i = 0; i < x.numel(); ++i) total += static_cast<double>(px[i]) * px[i];
  });
  return total;
}

}  // namespace fe::kernels
