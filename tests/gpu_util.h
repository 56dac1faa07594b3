// tests/gpu_util.h — shared by the GPU tests: they run where a CUDA device is present and skip,
// saying why, everywhere else (FE_REQUIRE_GPU). Also the helpers every CUDA-twin-against-CPU-twin
// test uses (namespace fe::test, beside tests/test_util.h):
//
//   kGpuDtypes                          the dtypes the twins are checked in: f32 and bf16
//   random_host(shape, dtype, rng, s)   host N(0, s) values rounded to dtype
//   gpu(t) / host_f64(t) / cpu_f32(t)   to the GPU; back to the host in f64; the CPU twin's f32 input
//   poisoned(shape, dtype)              GPU memory of NaN (integers: a sentinel): unwritten shows
//   misaligned_copy(t)                  the same elements one element past a 16-byte boundary
//   same_bytes(a, b)                    bit-for-bit equality, wherever a and b live
//   expect_close(got, want, dtype, tolerance, what[, error])
//                                       error(got, want) < tolerance, in f64 on the host; the
//                                       error defaults to test::relative_error (relative L2)
//   expect_close(got, want, dtype, what)  the same within default_tolerance(dtype): 1e-5 f32,
//                                       1e-2 bf16
//
// A test file with tolerances of its own (linear, attention) wraps the five-argument form.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "kernels/elementwise.h"
#include "tests/test_util.h"

#ifdef FE_HAVE_CUDA
#include "kernels/cuda/check.h"

#define FE_REQUIRE_GPU()                                                                  \
  do {                                                                                    \
    if (::fe::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine"; \
  } while (0)
#else
#define FE_REQUIRE_GPU() GTEST_SKIP() << "built without CUDA (nvcc was not found at configure time)"
#endif

namespace fe::test {

inline constexpr DType kGpuDtypes[] = {DType::f32, DType::bf16};

// A host tensor of N(0, scale) values rounded to dtype.
inline Tensor random_host(Shape shape, DType dtype, Rng& rng, double scale = 1.0) {
  return random_tensor(shape, rng, scale).to(dtype);
}

inline Tensor gpu(const Tensor& host) { return host.to_device(Device::cuda); }
inline Tensor host_f64(const Tensor& t) { return t.to_device(Device::cpu).to(DType::f64); }
// The CPU twin's input: the same values in f32, on the host (from either device).
inline Tensor cpu_f32(const Tensor& t) { return t.to_device(Device::cpu).to(DType::f32); }

// GPU memory filled with NaN (integers: a sentinel), so what a kernel does not write shows.
inline Tensor poisoned(Shape shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype, Device::cuda);
  kernels::fill(t, is_floating(dtype) ? std::nan("") : -123456.0);
  return t;
}

// The same elements, starting one element past a 16-byte boundary: the kernels' one-element
// (scalar) path, and an operand cuBLASLt is told is misaligned.
inline Tensor misaligned_copy(const Tensor& t) {
  Tensor storage = Tensor::empty(Shape{t.numel() + 1}, t.dtype(), t.device());
  Tensor view = storage.rows(1, t.numel() + 1).reshaped(t.shape());
  kernels::copy(view, t);
  return view;
}

inline bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.to_device(Device::cpu), hb = b.to_device(Device::cpu);
  return ha.nbytes() == hb.nbytes() && std::memcmp(ha.data(), hb.data(), ha.nbytes()) == 0;
}

// The error of a GPU result against its CPU twin, both given as f64 host tensors.
using ErrorOf = double (*)(const Tensor& got, const Tensor& want);

// EXPECT error(gpu_result, cpu_result) < tolerance, naming what, the dtype the test ran in and the shape.
inline void expect_close(const Tensor& gpu_result, const Tensor& cpu_result, DType dtype, double tolerance,
                         const std::string& what, ErrorOf error = relative_error) {
  const double e = error(host_f64(gpu_result), cpu_result.to(DType::f64));
  EXPECT_LT(e, tolerance) << what << " " << dtype_name(dtype) << " " << gpu_result.shape().str();
}

// The relative L2 tolerance of most twins (elementwise, norms, cross-entropy): 1e-5 for f32 and
// 1e-2 for bf16, the CPU computing in f32 on the same bf16-rounded inputs.
inline double default_tolerance(DType dtype) { return dtype == DType::bf16 ? 1e-2 : 1e-5; }

inline void expect_close(const Tensor& gpu_result, const Tensor& cpu_result, DType dtype, const std::string& what) {
  expect_close(gpu_result, cpu_result, dtype, default_tolerance(dtype), what);
}

}  // namespace fe::test
