#include "kernels/swiglu.h"

#include <cmath>

#include "kernels/cpu/dispatch.h"
#include "kernels/cuda/ops.h"

namespace fe::kernels {
namespace {

template <class T>
T sigmoid(T g) {
  return T(1) / (T(1) + std::exp(-g));
}

}  // namespace

void swiglu_forward(const View& out, const View& gate, const View& up) {
  detail::OpCheck check("swiglu_forward", {{"out", &out}, {"gate", &gate}, {"up", &up}});
  check.require(out.shape == gate.shape && up.shape == gate.shape, "gate, up and out must share a shape");
  if (cpu::on_gpu_float(check, gate)) {
    if constexpr (cpu::kHaveCuda) cuda::swiglu_forward(out, gate, up);
    return;
  }
  cpu::dispatch_float(check, gate, [&]<class T>(T) {
    const T* g = gate.as<T>();
    const T* u = up.as<T>();
    T* o = out.as<T>();
    const int64_t n = gate.numel();
#pragma omp parallel for schedule(static) if (n > cpu::kParallelWork)
    for (int64_t i = 0; i < n; ++i) o[i] = g[i] * sigmoid(g[i]) * u[i];
  });
}

// d silu(g)/dg = s·(1 + g·(1 − s)) with s = sigmoid(g).
void swiglu_backward(const View& dgate, const View& dup, const View& dout, const View& gate,
                     const View& up) {
  detail::OpCheck check("swiglu_backward", {{"dgate", &dgate}, {"dup", &dup}, {"dout", &dout},
                                            {"gate", &gate}, {"up", &up}});
  check.require(dgate.shape == gate.shape && dup.shape == gate.shape && dout.shape == gate.shape &&
                    up.shape == gate.shape,
                "all arguments must share a shape");
  if (cpu::on_gpu_float(check, gate)) {
    if constexpr (cpu::kHaveCuda) cuda::swiglu_backward(dgate, dup, dout, gate, up);
    return;
  }
  cpu::dispatch_float(check, gate, [&]<class T>(T) {
    const T* g = gate.as<T>();
    const T* u = up.as<T>();
    const T* d = dout.as<T>();
    T* dg = dgate.as<T>();
    T* du = dup.as<T>();
    const int64_t n = gate.numel();
#pragma omp parallel for schedule(static) if (n > cpu::kParallelWork)
    for (int64_t i = 0; i < n; ++i) {
      const T s = sigmoid(g[i]);
      du[i] = d[i] * g[i] * s;
      dg[i] = d[i] * u[i] * s * (T(1) + g[i] * (T(1) - s));
    }
  });
}

}  // namespace fe::kernels
