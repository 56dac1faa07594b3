// kernels/cpu/common.h — what the CPU twins share: the work threshold for OpenMP teams and the
// dtype dispatch of their float templates.
#pragma once

#include <cstdint>
#include <string>

#include "core/error.h"
#include "kernels/view.h"

namespace fe::kernels::cpu {

// Loops with less work than this (in multiply-adds or elements) run on one thread: waking a team
// costs more than it saves, and idle OpenMP threads spinning beside other processes on a busy
// machine can slow a small op down a hundredfold.
inline constexpr int64_t kParallelWork = 1 << 16;

// Calls fn(T{}) with T the type of a dtype the CPU twins compute in: float (the engine's CPU
// precision) or double (the reference the tests check against). The public op has checked it.
template <class Fn>
void with_float_type(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::f32:
      fn(float{});
      return;
    case DType::f64:
      fn(double{});
      return;
    default:
      throw Error(std::string("CPU kernels compute in f32 or f64, got ") + dtype_name(dtype));
  }
}

}  // namespace fe::kernels::cpu
