// tests/gpu_util.h — shared by the GPU tests of whole components (gpu_test.cpp, gpu_model_test.cpp):
// they run where a CUDA device is present and skip, saying why, everywhere else (FE_REQUIRE_GPU).
// The ops themselves run on every backend in backend_ops_test.cpp.
//
//   host_f64(t)                              back to the host in f64
//   expect_close(got, want, dtype, tolerance, what)
//                                            relative L2 error(got, want) < tolerance, in f64 on the host
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "engine/tensor.h"
#include "tests/test_util.h"

#ifdef FE_HAVE_CUDA
#include "kernels/cuda/check.h"

#define FE_REQUIRE_GPU()                                                                   \
  do {                                                                                     \
    if (::fe::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine"; \
  } while (0)
#else
#define FE_REQUIRE_GPU() GTEST_SKIP() << "built without CUDA (nvcc was not found at configure time)"
#endif

namespace fe::test {

inline Tensor host_f64(const Tensor& t) { return t.to_device(Device::cpu).to(DType::f64); }

// EXPECT relative_error(gpu_result, cpu_result) < tolerance, naming what, the dtype the test ran in
// and the shape.
inline void expect_close(const Tensor& gpu_result, const Tensor& cpu_result, DType dtype, double tolerance,
                         const std::string& what) {
  const double e = relative_error(host_f64(gpu_result), cpu_result.to(DType::f64));
  EXPECT_LT(e, tolerance) << what << " " << dtype_name(dtype) << " " << gpu_result.shape().str();
}

}  // namespace fe::test
