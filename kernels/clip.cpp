// The public DP building blocks: argument checks, then the CPU or CUDA twin (kernels/twins.h).
#include "kernels/clip.h"

#include <cmath>
#include <string>

#include "kernels/dispatch.h"
#include "kernels/twins.h"

namespace fe::kernels {
namespace {

// Whether a list runs on the GPU. Each view is checked against the first: a list lives on one
// device, and on the GPU shares one float dtype; on the CPU each view is f32 or f64 of its own.
bool list_on_gpu(const char* op, std::span<const View> xs) {
  bool gpu = false;
  for (size_t i = 0; i < xs.size(); ++i) {
    const std::string name = std::string(op) + "[" + std::to_string(i) + "]";
    gpu = detail::on_gpu_float(detail::OpCheck(name.c_str(), {{"x", &xs[i]}, {"xs[0]", &xs[0]}}), xs[i]);
    if (!gpu) detail::require_cpu_float(detail::OpCheck(name.c_str(), {{"x", &xs[i]}}), xs[i]);
  }
  return gpu;
}

}  // namespace

double global_norm(std::span<const View> xs) {
  const ViewList list{xs.data(), xs.size()};
  if (list_on_gpu("global_norm", xs)) {
    if constexpr (detail::kHaveCuda) return std::sqrt(cuda::sum_squares(list));
  }
  return std::sqrt(cpu::sum_squares(list));
}

void scale_all(std::span<const View> xs, double alpha) {
  const ScaleAllArgs args{ViewList{xs.data(), xs.size()}, alpha};
  if (list_on_gpu("scale_all", xs)) {
    if constexpr (detail::kHaveCuda) cuda::scale_all(args);
    return;
  }
  cpu::scale_all(args);
}

void add_gaussian_noise(const View& x, double stddev, uint64_t seed, uint64_t offset) {
  detail::OpCheck check("add_gaussian_noise", {{"x", &x}});
  check.require(offset + static_cast<uint64_t>(x.numel()) >= offset, "offset + numel overflows 2^64");
  const GaussianNoiseArgs args{x, stddev, seed, offset};
  if (detail::on_gpu_float(check, x)) {
    if constexpr (detail::kHaveCuda) cuda::add_gaussian_noise(args);
    return;
  }
  detail::require_cpu_float(check, x);
  cpu::add_gaussian_noise(args);
}

}  // namespace fe::kernels
