#include "kernels/adamw.h"

#include <cmath>
#include <string>

#include "kernels/cpu/dispatch.h"
#include "kernels/cuda/ops.h"

namespace fe::kernels {
namespace {

// The checks of one tensor's views, shared by adamw_step and adamw_step_all.
void check_adamw_args(const detail::OpCheck& check, const View& param, const View& grad,
                      const View& m, const View& v, int64_t step) {
  check.require(grad.shape == param.shape && m.shape == param.shape && v.shape == param.shape,
                "param, grad, m and v must share a shape");
  check.require(step >= 1, "step counts from 1");
}

// The hyperparameters with this step's bias corrections 1 − βᵗ.
cuda::AdamWStep with_bias_corrections(const AdamWHyper& h, int64_t step) {
  return {h.lr, h.beta1, h.beta2, h.eps, h.weight_decay,
          1.0 - std::pow(h.beta1, static_cast<double>(step)),
          1.0 - std::pow(h.beta2, static_cast<double>(step))};
}

}  // namespace

void adamw_step(const View& param, const View& grad, const View& m, const View& v,
                const AdamWHyper& h, int64_t step) {
  detail::OpCheck check("adamw_step", {{"param", &param}, {"grad", &grad}, {"m", &m}, {"v", &v}});
  check_adamw_args(check, param, grad, m, v, step);
  const cuda::AdamWStep s = with_bias_corrections(h, step);
  if (cpu::on_gpu_float(check, param)) {
    if constexpr (cpu::kHaveCuda) cuda::adamw_step(&param, &grad, &m, &v, 1, s);
    return;
  }
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
      const double m_hat = pm[i] / s.bias1, v_hat = pv[i] / s.bias2;
      p[i] -= static_cast<T>(h.lr * m_hat / (std::sqrt(v_hat) + h.eps));
    }
  });
}

void adamw_step_all(std::span<const View> params, std::span<const View> grads,
                    std::span<const View> m, std::span<const View> v, const AdamWHyper& h,
                    int64_t step) {
  if (grads.size() != params.size() || m.size() != params.size() || v.size() != params.size())
    throw Error("adamw_step_all: params, grads, m and v must be lists of one length, got " +
                std::to_string(params.size()) + ", " + std::to_string(grads.size()) + ", " +
                std::to_string(m.size()) + ", " + std::to_string(v.size()));
  // Each tensor is checked as adamw_step checks it, and against the first: a list lives on one
  // device, and on the GPU shares one float dtype.
  bool gpu = false;
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string op = "adamw_step_all[" + std::to_string(i) + "]";
    detail::OpCheck check(op.c_str(), {{"param", &params[i]}, {"grad", &grads[i]}, {"m", &m[i]},
                                       {"v", &v[i]}, {"params[0]", &params[0]}});
    check_adamw_args(check, params[i], grads[i], m[i], v[i], step);
    gpu = cpu::on_gpu_float(check, params[i]);
  }
  if (!gpu) {
    for (size_t i = 0; i < params.size(); ++i) adamw_step(params[i], grads[i], m[i], v[i], h, step);
    return;
  }
  if constexpr (cpu::kHaveCuda)
    cuda::adamw_step(params.data(), grads.data(), m.data(), v.data(), params.size(),
                     with_bias_corrections(h, step));
}

}  // namespace fe::kernels
