// CPU twin of kernels/rmsnorm.h (CUDA twin: kernels/cuda/rmsnorm.cu): a row at a time, sums in
// double.
#include <cmath>
#include <vector>

#include "kernels/cpu/common.h"
#include "kernels/twins.h"

namespace fe::kernels::cpu {

void rmsnorm_forward(const RmsNormForwardArgs& a) {
  with_float_type(a.x.dtype, [&]<class T>(T) {
    const int64_t dim = a.w.numel(), rows = a.x.numel() / dim;
    const T* pw = a.w.as<T>();
#pragma omp parallel for schedule(static) if (rows * dim > kParallelWork)
    for (int64_t n = 0; n < rows; ++n) {
      const T* px = a.x.as<T>() + n * dim;
      T* py = a.y.as<T>() + n * dim;
      double sum_sq = 0;
      for (int64_t d = 0; d < dim; ++d) sum_sq += static_cast<double>(px[d]) * px[d];
      const T r = static_cast<T>(1.0 / std::sqrt(sum_sq / dim + a.eps));
      a.rstd.as<T>()[n] = r;
      for (int64_t d = 0; d < dim; ++d) py[d] = pw[d] * (px[d] * r);
    }
  });
}

// With x̂ = x·r: dx = r·(g − x̂·mean(g ⊙ x̂)) where g = dy ⊙ w.
void rmsnorm_backward(const RmsNormBackwardArgs& a) {
  with_float_type(a.x.dtype, [&]<class T>(T) {
    const int64_t dim = a.w.numel(), rows = a.x.numel() / dim;
    const T* pw = a.w.as<T>();
#pragma omp parallel for schedule(static) if (rows * dim > kParallelWork)
    for (int64_t n = 0; n < rows; ++n) {
      const T* px = a.x.as<T>() + n * dim;
      const T* pdy = a.dy.as<T>() + n * dim;
      T* pdx = a.dx.as<T>() + n * dim;
      const double r = a.rstd.as<T>()[n];
      double dot = 0;  // Σ g ⊙ x̂
      for (int64_t d = 0; d < dim; ++d) dot += static_cast<double>(pdy[d]) * pw[d] * px[d] * r;
      const double mean_dot = dot / dim;
      for (int64_t d = 0; d < dim; ++d) {
        const double xhat = px[d] * r;
        const T grad = static_cast<T>(r * (pdy[d] * static_cast<double>(pw[d]) - xhat * mean_dot));
        pdx[d] = a.accumulate ? pdx[d] + grad : grad;
      }
    }
    if (a.dw.empty()) return;
    // Σ over rows in a fixed order so the result does not depend on the thread count.
    std::vector<double> acc(dim, 0.0);
    for (int64_t n = 0; n < rows; ++n) {
      const T* px = a.x.as<T>() + n * dim;
      const T* pdy = a.dy.as<T>() + n * dim;
      const double r = a.rstd.as<T>()[n];
      for (int64_t d = 0; d < dim; ++d) acc[d] += static_cast<double>(pdy[d]) * px[d] * r;
    }
    for (int64_t d = 0; d < dim; ++d) a.dw.as<T>()[d] += static_cast<T>(acc[d]);
  });
}

}  // namespace fe::kernels::cpu
