// CPU twin of kernels/swiglu.h (CUDA twin: kernels/cuda/swiglu.cu).
#include <cmath>

#include "kernels/cpu/common.h"
#include "kernels/twins.h"

namespace fe::kernels::cpu {
namespace {

template <class T>
T sigmoid(T g) {
  return T(1) / (T(1) + std::exp(-g));
}

}  // namespace

void swiglu_forward(const SwiGluForwardArgs& a) {
  with_float_type(a.gate.dtype, [&]<class T>(T) {
    const T* g = a.gate.as<T>();
    const T* u = a.up.as<T>();
    T* o = a.out.as<T>();
    const int64_t n = a.gate.numel();
#pragma omp parallel for schedule(static) if (n > kParallelWork)
    for (int64_t i = 0; i < n; ++i) o[i] = g[i] * sigmoid(g[i]) * u[i];
  });
}

// d silu(g)/dg = s·(1 + g·(1 − s)) with s = sigmoid(g).
void swiglu_backward(const SwiGluBackwardArgs& a) {
  with_float_type(a.gate.dtype, [&]<class T>(T) {
    const T* g = a.gate.as<T>();
    const T* u = a.up.as<T>();
    const T* d = a.dout.as<T>();
    T* dg = a.dgate.as<T>();
    T* du = a.dup.as<T>();
    const int64_t n = a.gate.numel();
#pragma omp parallel for schedule(static) if (n > kParallelWork)
    for (int64_t i = 0; i < n; ++i) {
      const T s = sigmoid(g[i]);
      du[i] = d[i] * g[i] * s;
      dg[i] = d[i] * u[i] * s * (T(1) + g[i] * (T(1) - s));
    }
  });
}

}  // namespace fe::kernels::cpu
