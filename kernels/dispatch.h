// kernels/dispatch.h — how a public op (kernels/<op>.cpp) picks its backend.
//
// Every public op checks its arguments once (detail::OpCheck, shape checks), then sends them to
// one of two twins with the same signature (kernels/twins.h):
//   const RmsNormForwardArgs args{...};
//   if (on_gpu_float(check, x)) {
//     if constexpr (kHaveCuda) cuda::rmsnorm_forward(args);   // kernels/cuda/rmsnorm.cu
//     return;
//   }
//   require_cpu_float(check, x);
//   cpu::rmsnorm_forward(args);                                // kernels/cpu/rmsnorm.cpp
// `if constexpr` keeps a build without CUDA from referencing the CUDA twins, which only a CUDA
// build defines; there on_gpu throws before the branch is reached. The twins trust these checks.
#pragma once

#include <string>

#include "kernels/view.h"

namespace fe::detail {

#ifdef FE_HAVE_CUDA
inline constexpr bool kHaveCuda = true;
#else
inline constexpr bool kHaveCuda = false;
#endif

// A build without CUDA cannot touch GPU views; the error names the op.
inline void require_cuda_build(const OpCheck& check) {
  check.require(kHaveCuda, "built without CUDA (nvcc was not found at configure time), so GPU views cannot be used");
}

// Whether the op runs on the GPU: all its views share one device and `v` is on the GPU.
inline bool on_gpu(const OpCheck& check, const View& v) {
  check.require_same_device();
  if (v.device != Device::cuda) return false;
  require_cuda_build(check);
  return true;
}

// On the GPU, floating arguments share one dtype, f32 or bf16 (math is fp32 either way).
inline void require_gpu_float(const OpCheck& check, const View& v) {
  check.require_same_float_dtype();
  if (v.dtype != DType::f32 && v.dtype != DType::bf16)
    check.fail("GPU kernels take f32 or bf16, got " + std::string(dtype_name(v.dtype)));
}

inline bool on_gpu_float(const OpCheck& check, const View& v) {
  if (!on_gpu(check, v)) return false;
  require_gpu_float(check, v);
  return true;
}

// The CPU path: every op sends GPU views to its CUDA twin before it gets here, so a GPU view here
// is an op called with views on different devices or an op whose twin is missing (a bug).
inline void require_cpu(const OpCheck& check, const View& v) {
  check.require_same_device();
  check.require(v.device == Device::cpu,
                kHaveCuda ? "this op has no CUDA implementation for these arguments" : "built without CUDA");
}

// On the CPU, floating arguments share one dtype, f32 (the engine's precision) or f64 (the
// reference the tests check against).
inline void require_cpu_float(const OpCheck& check, const View& v) {
  check.require_same_float_dtype();
  require_cpu(check, v);
  if (v.dtype != DType::f32 && v.dtype != DType::f64)
    check.fail("CPU kernels compute in f32 or f64, got " + std::string(dtype_name(v.dtype)));
}

}  // namespace fe::detail
