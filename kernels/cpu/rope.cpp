#include "kernels/rope.h"

#include <cmath>

#include "kernels/cpu/dispatch.h"
#include "kernels/cuda/ops.h"

namespace fe::kernels {

void rope_tables(const View& cos, const View& sin, const View& positions, const View& inv_freq) {
  detail::OpCheck check("rope_tables", {{"cos", &cos}, {"sin", &sin}, {"positions", &positions},
                                        {"inv_freq", &inv_freq}});
  const int64_t half = inv_freq.numel();
  check.require(positions.dtype == DType::i32 && inv_freq.dtype == DType::f64,
                "positions must be i32 and inv_freq f64");
  check.require(cos.shape == sin.shape && cos.numel() == positions.numel() * half,
                "expects cos, sin [N, hd/2] for positions [N] and inv_freq [hd/2]");
  check.require(cos.dtype == sin.dtype, "cos and sin must share a dtype");
  const detail::OpCheck float_check("rope_tables", {{"cos", &cos}, {"sin", &sin}});
  if (cpu::on_gpu(check, cos)) {
    cpu::require_gpu_float(float_check, cos);
    if constexpr (cpu::kHaveCuda) cuda::rope_tables(cos, sin, positions, inv_freq);
    return;
  }
  cpu::dispatch_float(float_check, cos, [&]<class T>(T) {
    const int32_t* pos = positions.as<int32_t>();
    const double* freq = inv_freq.as<double>();
    for (int64_t n = 0; n < positions.numel(); ++n)
      for (int64_t i = 0; i < half; ++i) {
        const double angle = pos[n] * freq[i];
        cos.as<T>()[n * half + i] = static_cast<T>(std::cos(angle));
        sin.as<T>()[n * half + i] = static_cast<T>(std::sin(angle));
      }
  });
}

void rope_apply(const View& x, const View& cos, const View& sin, bool inverse) {
  detail::OpCheck check("rope_apply", {{"x", &x}, {"cos", &cos}, {"sin", &sin}});
  check.require(x.shape.rank() == 3 && x.shape[2] % 2 == 0, "expects x [N, H, hd] with even hd");
  const int64_t tokens = x.shape[0], heads = x.shape[1], half = x.shape[2] / 2;
  check.require(cos.shape == sin.shape && cos.numel() == tokens * half, "expects cos, sin [N, hd/2]");
  if (cpu::on_gpu_float(check, x)) {
    if constexpr (cpu::kHaveCuda) cuda::rope_apply(x, cos, sin, inverse);
    return;
  }
  cpu::dispatch_float(check, x, [&]<class T>(T) {
    const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel for schedule(static) if (x.numel() > cpu::kParallelWork)
    for (int64_t n = 0; n < tokens; ++n) {
      const T* c = cos.as<T>() + n * half;
      const T* s = sin.as<T>() + n * half;
      for (int64_t h = 0; h < heads; ++h) {
        T* v = x.as<T>() + (n * heads + h) * 2 * half;
        for (int64_t i = 0; i < half; ++i) {
          const T lo = v[i], hi = v[i + half], sn = sign * s[i];
          v[i] = lo * c[i] - hi * sn;
          v[i + half] = hi * c[i] + lo * sn;
        }
      }
    }
  });
}

}  // namespace fe::kernels
