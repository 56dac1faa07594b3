#include "kernels/adamw.h"

#include <cmath>

#include "kernels/cpu/dispatch.h"

namespace fe::kernels {

void adamw_step(const View& param, const View& grad, const View& m, const View& v,
                const AdamWHyper& h, int64_t step) {
  detail::OpCheck check("adamw_step", {{"param", &param}, {"grad", &grad}, {"m", &m}, {"v", &v}});
  check.require(grad.shape == param.shape && m.shape == param.shape && v.shape == param.shape,
                "param, grad, m and v must share a shape");
  check.require(step >= 1, "step counts from 1");
  const double bias1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  cpu::dispatch_float(check, param, [&]<class T>(T) {
    T* p = param.as<T>();
    const T* g = grad.as<T>();
    T* pm = m.as<T>();
    T* pv = v.as<T>();
    const int64_t n = param.numel();
#pragma omp parallel for schedule(static) if (n > cpu::kParallelWork)
    for (int64_t i = 0; i < n; ++i) {
      p[i] -= static_cast<T>(h.lr * h.weight_decay) * p[i];
      pm[i] = static_cast<T>(h.beta1) * pm[i] + static_cast<T>(1 - h.beta1) * g[i];
      pv[i] = static_cast<T>(h.beta2) * pv[i] + static_cast<T>(1 - h.beta2) * g[i] * g[i];
      const double m_hat = pm[i] / bias1, v_hat = pv[i] / bias2;
      p[i] -= static_cast<T>(h.lr * m_hat / (std::sqrt(v_hat) + h.eps));
    }
  });
}

}  // namespace fe::kernels
