// CPU twin of kernels/rope.h (CUDA twin: kernels/cuda/rope.cu). Tables are computed in double,
// then rounded to the tables' dtype.
#include <cmath>

#include "kernels/cpu/common.h"
#include "kernels/twins.h"

namespace fe::kernels::cpu {

void rope_tables(const RopeTablesArgs& a) {
  with_float_type(a.cos.dtype, [&]<class T>(T) {
    const int64_t half = a.inv_freq.numel();
    const int32_t* pos = a.positions.as<int32_t>();
    const double* freq = a.inv_freq.as<double>();
    for (int64_t n = 0; n < a.positions.numel(); ++n)
      for (int64_t i = 0; i < half; ++i) {
        const double angle = pos[n] * freq[i];
        a.cos.as<T>()[n * half + i] = static_cast<T>(std::cos(angle));
        a.sin.as<T>()[n * half + i] = static_cast<T>(std::sin(angle));
      }
  });
}

void rope_apply(const RopeApplyArgs& a) {
  with_float_type(a.x.dtype, [&]<class T>(T) {
    const int64_t tokens = a.x.shape[0], heads = a.x.shape[1], half = a.x.shape[2] / 2;
    const T sign = a.inverse ? T(-1) : T(1);
#pragma omp parallel for schedule(static) if (a.x.numel() > kParallelWork)
    for (int64_t n = 0; n < tokens; ++n) {
      const T* c = a.cos.as<T>() + n * half;
      const T* s = a.sin.as<T>() + n * half;
      for (int64_t h = 0; h < heads; ++h) {
        T* v = a.x.as<T>() + (n * heads + h) * 2 * half;
        for (int64_t i = 0; i < half; ++i) {
          const T lo = v[i], hi = v[i + half], sn = sign * s[i];
          v[i] = lo * c[i] - hi * sn;
          v[i + half] = hi * c[i] + lo * sn;
        }
      }
    }
  });
}

}  // namespace fe::kernels::cpu
