#include "kernels/rmsnorm.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "kernels/cuda/ops.h"

namespace fe::kernels {
namespace {

// On the GPU, rstd may be f32 beside bf16 rows (the backward then scales by the unrounded 1/rms);
// the other floating views share one dtype.
bool rmsnorm_on_gpu(const detail::OpCheck& check, const char* op, const View& rstd,
                    std::initializer_list<std::pair<const char*, const View*>> rows) {
  if (!cpu::on_gpu(check, *rows.begin()->second)) return false;
  cpu::require_gpu_float(detail::OpCheck(op, rows), *rows.begin()->second);
  check.require(rstd.dtype == DType::f32 || rstd.dtype == rows.begin()->second->dtype,
                "rstd must be f32 or the dtype of x");
  return true;
}

}  // namespace

void rmsnorm_forward(const View& y, const View& rstd, const View& x, const View& w, double eps) {
  detail::OpCheck check("rmsnorm_forward", {{"y", &y}, {"rstd", &rstd}, {"x", &x}, {"w", &w}});
  const int64_t dim = w.numel();
  check.require(dim > 0 && x.shape[-1] == dim && y.shape == x.shape && rstd.numel() == x.numel() / dim,
                "expects x, y [N, D], w [D], rstd [N]");
  if (rmsnorm_on_gpu(check, "rmsnorm_forward", rstd, {{"x", &x}, {"y", &y}, {"w", &w}})) {
    if constexpr (cpu::kHaveCuda) cuda::rmsnorm_forward(y, rstd, x, w, eps);
    return;
  }
  cpu::dispatch_float(check, x, [&]<class T>(T) {
    const int64_t rows = x.numel() / dim;
    const T* pw = w.as<T>();
#pragma omp parallel for schedule(static) if (rows * dim > cpu::kParallelWork)
    for (int64_t n = 0; n < rows; ++n) {
      const T* px = x.as<T>() + n * dim;
      T* py = y.as<T>() + n * dim;
      double sum_sq = 0;
      for (int64_t d = 0; d < dim; ++d) sum_sq += static_cast<double>(px[d]) * px[d];
      const T r = static_cast<T>(1.0 / std::sqrt(sum_sq / dim + eps));
      rstd.as<T>()[n] = r;
      for (int64_t d = 0; d < dim; ++d) py[d] = pw[d] * (px[d] * r);
    }
  });
}

// With x̂ = x·r: dx = r·(g − x̂·mean(g ⊙ x̂)) where g = dy ⊙ w.
void rmsnorm_backward(const View& dx, const View& dw, const View& dy, const View& x, const View& w,
                      const View& rstd, bool accumulate) {
  detail::OpCheck check("rmsnorm_backward", {{"dx", &dx}, {"dw", &dw}, {"dy", &dy}, {"x", &x},
                                             {"w", &w}, {"rstd", &rstd}});
  const int64_t dim = w.numel();
  check.require(dim > 0 && x.shape[-1] == dim && dy.shape == x.shape && dx.shape == x.shape &&
                    rstd.numel() == x.numel() / dim && (dw.empty() || dw.numel() == dim),
                "expects x, dx, dy [N, D], w and dw [D], rstd [N]");
  if (rmsnorm_on_gpu(check, "rmsnorm_backward", rstd, {{"x", &x}, {"dx", &dx}, {"dw", &dw}, {"dy", &dy}, {"w", &w}})) {
    if constexpr (cpu::kHaveCuda) cuda::rmsnorm_backward(dx, dw, dy, x, w, rstd, accumulate);
    return;
  }
  cpu::dispatch_float(check, x, [&]<class T>(T) {
    const int64_t rows = x.numel() / dim;
    const T* pw = w.as<T>();
#pragma omp parallel for schedule(static) if (rows * dim > cpu::kParallelWork)
    for (int64_t n = 0; n < rows; ++n) {
      const T* px = x.as<T>() + n * dim;
      const T* pdy = dy.as<T>() + n * dim;
      T* pdx = dx.as<T>() + n * dim;
      const double r = rstd.as<T>()[n];
      double dot = 0;  // Σ g ⊙ x̂
      for (int64_t d = 0; d < dim; ++d) dot += static_cast<double>(pdy[d]) * pw[d] * px[d] * r;
      const double mean_dot = dot / dim;
      for (int64_t d = 0; d < dim; ++d) {
        const double xhat = px[d] * r;
        const T grad = static_cast<T>(r * (pdy[d] * static_cast<double>(pw[d]) - xhat * mean_dot));
        pdx[d] = accumulate ? pdx[d] + grad : grad;
      }
    }
    if (dw.empty()) return;
    // Σ over rows in a fixed order so the result does not depend on the thread count.
    std::vector<double> acc(dim, 0.0);
    for (int64_t n = 0; n < rows; ++n) {
      const T* px = x.as<T>() + n * dim;
      const T* pdy = dy.as<T>() + n * dim;
      const double r = rstd.as<T>()[n];
      for (int64_t d = 0; d < dim; ++d) acc[d] += static_cast<double>(pdy[d]) * px[d] * r;
    }
    for (int64_t d = 0; d < dim; ++d) dw.as<T>()[d] += static_cast<T>(acc[d]);
  });
}

}  // namespace fe::kernels
