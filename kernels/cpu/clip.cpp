// CPU twins of kernels/clip.h, and of sum_squares and scale from kernels/elementwise.h (a single
// view is a list of one). CUDA twins: kernels/cuda/clip.cu.
#include "kernels/cpu/common.h"
#include "kernels/philox.h"
#include "kernels/twins.h"

namespace fe::kernels::cpu {

double sum_squares(const ViewList& xs) {
  double total = 0;
  for (size_t k = 0; k < xs.count; ++k) {  // each view's sum, then their sum
    const View& x = xs.views[k];
    double view_total = 0;
    with_float_type(x.dtype, [&]<class T>(T) {
      const T* px = x.as<T>();
      for (int64_t i = 0; i < x.numel(); ++i) view_total += static_cast<double>(px[i]) * px[i];
    });
    total += view_total;
  }
  return total;
}

void scale_all(const ScaleAllArgs& a) {
  for (size_t k = 0; k < a.xs.count; ++k) {
    const View& x = a.xs.views[k];
    with_float_type(x.dtype, [&]<class T>(T) {
      T* px = x.as<T>();
      const T alpha = static_cast<T>(a.alpha);
      for (int64_t i = 0; i < x.numel(); ++i) px[i] *= alpha;
    });
  }
}

void add_gaussian_noise(const GaussianNoiseArgs& a) {
  with_float_type(a.x.dtype, [&]<class T>(T) {
    const int64_t n = a.x.numel();
    if (n == 0) return;
    // Normal number j = offset + i comes from Philox block j / 4; blocks are independent, so
    // threads split them.
    const uint64_t offset = a.offset, first = offset / 4, last = (offset + n - 1) / 4;
#pragma omp parallel for schedule(static) if (n > kParallelWork)
    for (uint64_t block = first; block <= last; ++block) {
      float z[4];
      philox::normal4(a.seed, block, z);
      for (int k = 0; k < 4; ++k) {
        const uint64_t j = block * 4 + k;
        if (j < offset || j - offset >= static_cast<uint64_t>(n)) continue;
        a.x.as<T>()[j - offset] += static_cast<T>(a.stddev) * static_cast<T>(z[k]);
      }
    }
  });
}

}  // namespace fe::kernels::cpu
