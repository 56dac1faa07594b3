// GPU checks. They run where a CUDA device is present and skip, saying why, everywhere else
// (tests/gpu_util.h). The ops on every backend against the CPU: backend_ops_test.cpp.
#include <gtest/gtest.h>

#include "engine/tensor.h"
#include "tests/gpu_util.h"

namespace fe {
namespace {

TEST(Gpu, DeviceMemoryRoundTrip) {
  FE_REQUIRE_GPU();
#ifdef FE_HAVE_CUDA
  Tensor host = Tensor::empty(Shape{1000}, DType::f32);
  for (int i = 0; i < 1000; ++i) host.as<float>()[i] = static_cast<float>(i) * 0.5f;
  Tensor device = Tensor::empty(Shape{1000}, DType::f32, Device::cuda);
  FE_CUDA_CHECK(cudaMemcpy(device.data(), host.data(), host.nbytes(), cudaMemcpyHostToDevice));
  Tensor back = Tensor::zeros(Shape{1000}, DType::f32);
  FE_CUDA_CHECK(cudaMemcpy(back.data(), device.data(), host.nbytes(), cudaMemcpyDeviceToHost));
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(back.as<float>()[i], host.as<float>()[i]);
#endif
}

TEST(Gpu, FailedCallNamesFileAndLine) {
  FE_REQUIRE_GPU();
#ifdef FE_HAVE_CUDA
  try {
    FE_CUDA_CHECK(cudaMemcpy(nullptr, reinterpret_cast<void*>(1), 16, cudaMemcpyDeviceToHost));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gpu_test.cpp:"), std::string::npos) << e.what();
  }
#endif
}

}  // namespace
}  // namespace fe
