// The public RMSNorm ops: argument checks, then the CPU or CUDA twin (kernels/twins.h).
#include "kernels/rmsnorm.h"

#include "kernels/dispatch.h"
#include "kernels/twins.h"

namespace fe::kernels {
namespace {

// On the GPU, rstd may be f32 beside bf16 rows (the backward then scales by the unrounded 1/rms);
// the other floating views share one dtype. On the CPU every floating view shares f32 or f64.
bool rmsnorm_on_gpu(const detail::OpCheck& check, const char* op, const View& rstd,
                    std::initializer_list<std::pair<const char*, const View*>> rows) {
  const View& x = *rows.begin()->second;
  if (!detail::on_gpu(check, x)) {
    detail::require_cpu_float(check, x);
    return false;
  }
  detail::require_gpu_float(detail::OpCheck(op, rows), x);
  check.require(rstd.dtype == DType::f32 || rstd.dtype == x.dtype, "rstd must be f32 or the dtype of x");
  return true;
}

}  // namespace

void rmsnorm_forward(const View& y, const View& rstd, const View& x, const View& w, double eps) {
  detail::OpCheck check("rmsnorm_forward", {{"y", &y}, {"rstd", &rstd}, {"x", &x}, {"w", &w}});
  const int64_t dim = w.numel();
  check.require(dim > 0 && x.shape[-1] == dim && y.shape == x.shape && rstd.numel() == x.numel() / dim,
                "expects x, y [N, D], w [D], rstd [N]");
  const RmsNormForwardArgs args{y, rstd, x, w, eps};
  if (rmsnorm_on_gpu(check, "rmsnorm_forward", rstd, {{"x", &x}, {"y", &y}, {"w", &w}})) {
    if constexpr (detail::kHaveCuda) cuda::rmsnorm_forward(args);
    return;
  }
  cpu::rmsnorm_forward(args);
}

void rmsnorm_backward(const View& dx, const View& dw, const View& dy, const View& x, const View& w, const View& rstd,
                      bool accumulate) {
  detail::OpCheck check("rmsnorm_backward",
                        {{"dx", &dx}, {"dw", &dw}, {"dy", &dy}, {"x", &x}, {"w", &w}, {"rstd", &rstd}});
  const int64_t dim = w.numel();
  check.require(dim > 0 && x.shape[-1] == dim && dy.shape == x.shape && dx.shape == x.shape &&
                    rstd.numel() == x.numel() / dim && (dw.empty() || dw.numel() == dim),
                "expects x, dx, dy [N, D], w and dw [D], rstd [N]");
  const RmsNormBackwardArgs args{dx, dw, dy, x, w, rstd, accumulate};
  if (rmsnorm_on_gpu(check, "rmsnorm_backward", rstd, {{"x", &x}, {"dx", &dx}, {"dw", &dw}, {"dy", &dy}, {"w", &w}})) {
    if constexpr (detail::kHaveCuda) cuda::rmsnorm_backward(args);
    return;
  }
  cpu::rmsnorm_backward(args);
}

}  // namespace fe::kernels
