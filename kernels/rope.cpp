// The public RoPE ops: argument checks, then the CPU or CUDA twin (kernels/twins.h).
#include "kernels/rope.h"

#include "kernels/dispatch.h"
#include "kernels/twins.h"

namespace fe::kernels {

void rope_tables(const View& cos, const View& sin, const View& positions, const View& inv_freq) {
  detail::OpCheck check("rope_tables",
                        {{"cos", &cos}, {"sin", &sin}, {"positions", &positions}, {"inv_freq", &inv_freq}});
  const int64_t half = inv_freq.numel();
  check.require(positions.dtype == DType::i32 && inv_freq.dtype == DType::f64,
                "positions must be i32 and inv_freq f64");
  check.require(cos.shape == sin.shape && cos.numel() == positions.numel() * half,
                "expects cos, sin [N, hd/2] for positions [N] and inv_freq [hd/2]");
  check.require(cos.dtype == sin.dtype, "cos and sin must share a dtype");
  // inv_freq is f64 whatever the tables' dtype, so only the tables are checked as floats.
  const detail::OpCheck float_check("rope_tables", {{"cos", &cos}, {"sin", &sin}});
  const RopeTablesArgs args{cos, sin, positions, inv_freq};
  if (detail::on_gpu(check, cos)) {
    detail::require_gpu_float(float_check, cos);
    if constexpr (detail::kHaveCuda) cuda::rope_tables(args);
    return;
  }
  detail::require_cpu_float(float_check, cos);
  cpu::rope_tables(args);
}

void rope_apply(const View& x, const View& cos, const View& sin, bool inverse) {
  detail::OpCheck check("rope_apply", {{"x", &x}, {"cos", &cos}, {"sin", &sin}});
  check.require(x.shape.rank() == 3 && x.shape[2] % 2 == 0, "expects x [N, H, hd] with even hd");
  const int64_t tokens = x.shape[0], half = x.shape[2] / 2;
  check.require(cos.shape == sin.shape && cos.numel() == tokens * half, "expects cos, sin [N, hd/2]");
  const RopeApplyArgs args{x, cos, sin, inverse};
  if (detail::on_gpu_float(check, x)) {
    if constexpr (detail::kHaveCuda) cuda::rope_apply(args);
    return;
  }
  detail::require_cpu_float(check, x);
  cpu::rope_apply(args);
}

}  // namespace fe::kernels
