// kernels/cpu/dispatch.h — sends an op to its GPU twin or runs a CPU kernel template for the
// floating dtype of its arguments.
//
// Every public op checks its arguments once (detail::OpCheck, shape checks), then:
//   if (cpu::on_gpu_float(check, x)) {
//     if constexpr (cpu::kHaveCuda) cuda::op(...);   // kernels/cuda/ops.h
//     return;
//   }
//   cpu::dispatch_float(check, x, ...);               // the CPU twin
// `if constexpr` keeps a build without CUDA from referencing the twins, which only a CUDA build
// defines; there on_gpu throws before the branch is reached.
//
// The CPU twins are templates over T ∈ {float, double}: f32 is the engine's CPU precision, f64 is
// the reference the gradient checks use. The GPU twins compute in fp32 on f32 or bf16 storage.
#pragma once

#include <string>

#include "kernels/view.h"

namespace fe::kernels::cpu {

#ifdef FE_HAVE_CUDA
inline constexpr bool kHaveCuda = true;
#else
inline constexpr bool kHaveCuda = false;
#endif

// Loops with less work than this (in multiply-adds or elements) run on one thread: waking a team
// costs more than it saves, and idle OpenMP threads spinning beside other processes on a busy
// machine can slow a small op down a hundredfold.
inline constexpr int64_t kParallelWork = 1 << 16;

// A build without CUDA cannot touch GPU views; the error names the op.
inline void require_cuda_build(const detail::OpCheck& check) {
  check.require(kHaveCuda, "built without CUDA (nvcc was not found at configure time), so GPU views cannot be used");
}

// Whether the op runs on the GPU: all its views share one device and `v` is on the GPU.
inline bool on_gpu(const detail::OpCheck& check, const View& v) {
  check.require_same_device();
  if (v.device != Device::cuda) return false;
  require_cuda_build(check);
  return true;
}

// On the GPU, floating arguments share one dtype, f32 or bf16 (math is fp32 either way).
inline void require_gpu_float(const detail::OpCheck& check, const View& v) {
  check.require_same_float_dtype();
  if (v.dtype != DType::f32 && v.dtype != DType::bf16)
    check.fail("GPU kernels take f32 or bf16, got " + std::string(dtype_name(v.dtype)));
}

inline bool on_gpu_float(const detail::OpCheck& check, const View& v) {
  if (!on_gpu(check, v)) return false;
  require_gpu_float(check, v);
  return true;
}

// The CPU path: every op sends GPU views to its twin before it gets here, so a GPU view here is
// an op called with views on different devices or an op whose twin is missing (a bug).
inline void require_cpu(const detail::OpCheck& check, const View& v) {
  check.require_same_device();
  check.require(v.device == Device::cpu, kHaveCuda ? "this op has no CUDA implementation for these arguments"
                                                  : "built without CUDA");
}

template <class Fn>
void dispatch_float(const detail::OpCheck& check, const View& v, Fn&& fn) {
  check.require_same_float_dtype();
  require_cpu(check, v);
  switch (v.dtype) {
    case DType::f32: fn(float{}); return;
    case DType::f64: fn(double{}); return;
    default: check.fail("CPU kernels compute in f32 or f64, got " + std::string(dtype_name(v.dtype)));
  }
}

}  // namespace fe::kernels::cpu
