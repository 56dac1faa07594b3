// CPU twin of kernels/adamw.h (CUDA twin: kernels/cuda/adamw.cu): tensor by tensor, each in its
// own float dtype.
#include <cmath>

#include "kernels/cpu/common.h"
#include "kernels/twins.h"

namespace fe::kernels::cpu {

void adamw_step(const AdamWArgs& a) {
  const AdamWStep& s = a.step;
  for (size_t k = 0; k < a.count; ++k) {
    with_float_type(a.params[k].dtype, [&]<class T>(T) {
      T* p = a.params[k].as<T>();
      const T* g = a.grads[k].as<T>();
      T* pm = a.m[k].as<T>();
      T* pv = a.v[k].as<T>();
      const int64_t n = a.params[k].numel();
#pragma omp parallel for schedule(static) if (n > kParallelWork)
      for (int64_t i = 0; i < n; ++i) {
        p[i] -= static_cast<T>(s.lr * s.weight_decay) * p[i];
        pm[i] = static_cast<T>(s.beta1) * pm[i] + static_cast<T>(1 - s.beta1) * g[i];
        pv[i] = static_cast<T>(s.beta2) * pv[i] + static_cast<T>(1 - s.beta2) * g[i] * g[i];
        const double m_hat = pm[i] / s.bias1, v_hat = pv[i] / s.bias2;
        p[i] -= static_cast<T>(s.lr * m_hat / (std::sqrt(v_hat) + s.eps));
      }
    });
  }
}

}  // namespace fe::kernels::cpu
