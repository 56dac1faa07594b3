// The public SwiGLU ops: argument checks, then the CPU or CUDA twin (kernels/twins.h).
#include "kernels/swiglu.h"

#include "kernels/dispatch.h"
#include "kernels/twins.h"

namespace fe::kernels {

void swiglu_forward(const View& out, const View& gate, const View& up) {
  detail::OpCheck check("swiglu_forward", {{"out", &out}, {"gate", &gate}, {"up", &up}});
  check.require(out.shape == gate.shape && up.shape == gate.shape, "gate, up and out must share a shape");
  const SwiGluForwardArgs args{out, gate, up};
  if (detail::on_gpu_float(check, gate)) {
    if constexpr (detail::kHaveCuda) cuda::swiglu_forward(args);
    return;
  }
  detail::require_cpu_float(check, gate);
  cpu::swiglu_forward(args);
}

void swiglu_backward(const View& dgate, const View& dup, const View& dout, const View& gate, const View& up) {
  detail::OpCheck check("swiglu_backward",
                        {{"dgate", &dgate}, {"dup", &dup}, {"dout", &dout}, {"gate", &gate}, {"up", &up}});
  check.require(
      dgate.shape == gate.shape && dup.shape == gate.shape && dout.shape == gate.shape && up.shape == gate.shape,
      "all arguments must share a shape");
  const SwiGluBackwardArgs args{dgate, dup, dout, gate, up};
  if (detail::on_gpu_float(check, gate)) {
    if constexpr (detail::kHaveCuda) cuda::swiglu_backward(args);
    return;
  }
  detail::require_cpu_float(check, gate);
  cpu::swiglu_backward(args);
}

}  // namespace fe::kernels
