#include "kernels/clip.h"

#include <cmath>
#include <string>

#include "kernels/cpu/dispatch.h"
#include "kernels/cuda/ops.h"
#include "kernels/elementwise.h"
#include "kernels/philox.h"

namespace fe::kernels {
namespace {

// Whether a list runs on the GPU. Each view is checked against the first: a list lives on one
// device, and on the GPU shares one float dtype (the CPU loops, so dtypes may differ there).
bool list_on_gpu(const char* op, std::span<const View> xs) {
  bool gpu = false;
  for (size_t i = 0; i < xs.size(); ++i) {
    const std::string name = std::string(op) + "[" + std::to_string(i) + "]";
    gpu = cpu::on_gpu_float(detail::OpCheck(name.c_str(), {{"x", &xs[i]}, {"xs[0]", &xs[0]}}), xs[i]);
  }
  return gpu;
}

}  // namespace

double global_norm(std::span<const View> xs) {
  if (list_on_gpu("global_norm", xs)) {
    if constexpr (cpu::kHaveCuda) return std::sqrt(cuda::sum_squares(xs.data(), xs.size()));
  }
  double total = 0;
  for (const View& x : xs) total += sum_squares(x);
  return std::sqrt(total);
}

void scale_all(std::span<const View> xs, double alpha) {
  if (list_on_gpu("scale_all", xs)) {
    if constexpr (cpu::kHaveCuda) cuda::scale(xs.data(), xs.size(), alpha);
    return;
  }
  for (const View& x : xs) scale(x, alpha);
}

void add_gaussian_noise(const View& x, double stddev, uint64_t seed, uint64_t offset) {
  detail::OpCheck check("add_gaussian_noise", {{"x", &x}});
  check.require(offset + static_cast<uint64_t>(x.numel()) >= offset, "offset + numel overflows 2^64");
  if (cpu::on_gpu_float(check, x)) {
    if constexpr (cpu::kHaveCuda) cuda::add_gaussian_noise(x, stddev, seed, offset);
    return;
  }
  cpu::dispatch_float(check, x, [&]<class T>(T) {
    const int64_t n = x.numel();
    if (n == 0) return;
    // Normal number j = offset + i comes from Philox block j / 4; blocks are independent, so
    // threads split them.
    const uint64_t first = offset / 4, last = (offset + n - 1) / 4;
#pragma omp parallel for schedule(static) if (n > cpu::kParallelWork)
    for (uint64_t block = first; block <= last; ++block) {
      float z[4];
      philox::normal4(seed, block, z);
      for (int k = 0; k < 4; ++k) {
        const uint64_t j = block * 4 + k;
        if (j < offset || j - offset >= static_cast<uint64_t>(n)) continue;
        x.as<T>()[j - offset] += static_cast<T>(stddev) * static_cast<T>(z[k]);
      }
    }
  });
}

}  // namespace fe::kernels
