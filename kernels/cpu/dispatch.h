// kernels/cpu/dispatch.h — runs a CPU kernel template for the floating dtype of its arguments.
//
// The CPU twins are templates over T ∈ {float, double}: f32 is the engine's CPU precision, f64 is
// the reference the gradient checks use.
#pragma once

#include "kernels/view.h"

namespace fe::kernels::cpu {

// Loops with less work than this (in multiply-adds or elements) run on one thread: waking a team
// costs more than it saves, and idle OpenMP threads spinning beside other processes on a busy
// machine can slow a small op down a hundredfold.
inline constexpr int64_t kParallelWork = 1 << 16;

template <class Fn>
void dispatch_float(const detail::OpCheck& check, const View& v, Fn&& fn) {
  check.require_same_float_dtype();
  check.require(v.device == Device::cpu, "no CUDA implementation of this op yet; use the CPU");
  switch (v.dtype) {
    case DType::f32: fn(float{}); return;
    case DType::f64: fn(double{}); return;
    default: check.fail("CPU kernels compute in f32 or f64, got " + std::string(dtype_name(v.dtype)));
  }
}

}  // namespace fe::kernels::cpu
