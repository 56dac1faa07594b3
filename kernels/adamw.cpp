// The public AdamW steps: argument checks, then the CPU or CUDA twin (kernels/twins.h).
#include "kernels/adamw.h"

#include <cmath>
#include <string>

#include "kernels/dispatch.h"
#include "kernels/twins.h"

namespace fe::kernels {
namespace {

// The checks of one tensor's views, shared by adamw_step and adamw_step_all.
void check_adamw_args(const detail::OpCheck& check, const View& param, const View& grad, const View& m, const View& v,
                      int64_t step) {
  check.require(grad.shape == param.shape && m.shape == param.shape && v.shape == param.shape,
                "param, grad, m and v must share a shape");
  check.require(step >= 1, "step counts from 1");
}

// The hyperparameters with this step's bias corrections 1 − βᵗ.
AdamWStep with_bias_corrections(const AdamWHyper& h, int64_t step) {
  return {h.lr,
          h.beta1,
          h.beta2,
          h.eps,
          h.weight_decay,
          1.0 - std::pow(h.beta1, static_cast<double>(step)),
          1.0 - std::pow(h.beta2, static_cast<double>(step))};
}

}  // namespace

void adamw_step(const View& param, const View& grad, const View& m, const View& v, const AdamWHyper& h, int64_t step) {
  detail::OpCheck check("adamw_step", {{"param", &param}, {"grad", &grad}, {"m", &m}, {"v", &v}});
  check_adamw_args(check, param, grad, m, v, step);
  const AdamWArgs args{&param, &grad, &m, &v, 1, with_bias_corrections(h, step)};
  if (detail::on_gpu_float(check, param)) {
    if constexpr (detail::kHaveCuda) cuda::adamw_step(args);
    return;
  }
  detail::require_cpu_float(check, param);
  cpu::adamw_step(args);
}

void adamw_step_all(std::span<const View> params, std::span<const View> grads, std::span<const View> m,
                    std::span<const View> v, const AdamWHyper& h, int64_t step) {
  if (grads.size() != params.size() || m.size() != params.size() || v.size() != params.size())
    throw Error("adamw_step_all: params, grads, m and v must be lists of one length, got " +
                std::to_string(params.size()) + ", " + std::to_string(grads.size()) + ", " + std::to_string(m.size()) +
                ", " + std::to_string(v.size()));
  // Each tensor is checked as adamw_step checks it, and against the first: a list lives on one
  // device, and on the GPU shares one float dtype (on the CPU each tensor has its own).
  bool gpu = false;
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string op = "adamw_step_all[" + std::to_string(i) + "]";
    detail::OpCheck check(
        op.c_str(),
        {{"param", &params[i]}, {"grad", &grads[i]}, {"m", &m[i]}, {"v", &v[i]}, {"params[0]", &params[0]}});
    check_adamw_args(check, params[i], grads[i], m[i], v[i], step);
    gpu = detail::on_gpu_float(check, params[i]);
    if (!gpu)
      detail::require_cpu_float(
          detail::OpCheck(op.c_str(), {{"param", &params[i]}, {"grad", &grads[i]}, {"m", &m[i]}, {"v", &v[i]}}),
          params[i]);
  }
  const AdamWArgs args{params.data(), grads.data(), m.data(), v.data(), params.size(), with_bias_corrections(h, step)};
  if (gpu) {
    if constexpr (detail::kHaveCuda) cuda::adamw_step(args);
    return;
  }
  cpu::adamw_step(args);
}

}  // namespace fe::kernels
