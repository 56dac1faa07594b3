// The public elementwise ops: argument checks, then the CPU or CUDA twin (kernels/twins.h).
#include "kernels/elementwise.h"

#include "kernels/dispatch.h"
#include "kernels/twins.h"

namespace fe::kernels {

void copy(const View& dst, const View& src) {
  detail::OpCheck check("copy", {{"dst", &dst}, {"src", &src}});
  check.require(dst.dtype == src.dtype && dst.numel() == src.numel(),
                "dst and src must share a dtype and an element count");
  const CopyArgs args{dst, src};
  if (dst.device == Device::cpu && src.device == Device::cpu) {
    cpu::copy(args);
    return;
  }
  detail::require_cuda_build(check);
  if constexpr (detail::kHaveCuda) cuda::copy(args);
}

void convert(const View& dst, const View& src) {
  detail::OpCheck check("convert", {{"dst", &dst}, {"src", &src}});
  check.require(dst.numel() == src.numel(), "element counts differ");
  check.require(is_floating(dst.dtype) == is_floating(src.dtype), "converts floats to floats and integers to integers");
  const bool gpu = detail::on_gpu(check, dst);
  if (dst.dtype == src.dtype) {
    copy(dst, src);
    return;
  }
  const ConvertArgs args{dst, src};
  if (gpu) {
    if constexpr (detail::kHaveCuda) cuda::convert(args);
    return;
  }
  cpu::convert(args);
}

void fill(const View& dst, double value) {
  detail::OpCheck check("fill", {{"dst", &dst}});
  const FillArgs args{dst, value};
  if (detail::on_gpu(check, dst)) {
    if constexpr (detail::kHaveCuda) cuda::fill(args);
    return;
  }
  cpu::fill(args);
}

void axpy(const View& y, const View& x, double alpha) {
  detail::OpCheck check("axpy", {{"y", &y}, {"x", &x}});
  check.require(y.shape == x.shape, "shapes differ");
  const AxpyArgs args{y, x, alpha};
  if (detail::on_gpu_float(check, y)) {
    if constexpr (detail::kHaveCuda) cuda::axpy(args);
    return;
  }
  detail::require_cpu_float(check, y);
  cpu::axpy(args);
}

void scale(const View& y, double alpha) {
  detail::OpCheck check("scale", {{"y", &y}});
  const ScaleAllArgs args{ViewList{&y, 1}, alpha};
  if (detail::on_gpu_float(check, y)) {
    if constexpr (detail::kHaveCuda) cuda::scale_all(args);
    return;
  }
  detail::require_cpu_float(check, y);
  cpu::scale_all(args);
}

double sum_squares(const View& x) {
  detail::OpCheck check("sum_squares", {{"x", &x}});
  const ViewList xs{&x, 1};
  if (detail::on_gpu_float(check, x)) {
    if constexpr (detail::kHaveCuda) return cuda::sum_squares(xs);
  }
  detail::require_cpu_float(check, x);
  return cpu::sum_squares(xs);
}

}  // namespace fe::kernels
