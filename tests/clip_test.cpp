// The DP building blocks on the CPU (kernels/clip.h: global norm, scale_all, Gaussian noise from
// Philox), the fused AdamW list step, Tensor::to_device and how ops dispatch by device. Their CUDA
// twins are compared with the CPU in backend_ops_test.cpp.
#include "kernels/clip.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/linear.h"
#include "kernels/philox.h"
#include "kernels/rmsnorm.h"
#include "tests/test_files.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using test::random_tensor;
using test::relative_error;

// A view that claims to be on the GPU; the checks must reject it before anything reads it.
View fake_gpu_view(Shape shape, DType dtype = DType::f32) {
  return View{reinterpret_cast<void*>(0x1000), dtype, shape, Device::cuda};
}

TEST(Philox, MatchesRandom123KnownAnswers) {
  // Random123's kat_vectors for philox4x32_10: counter, key, output.
  struct Kat {
    philox::Block ctr;
    uint32_t key0, key1;
    philox::Block out;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, 0xffffffff, 0xffffffff,
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Kat& kat : kats) {
    const philox::Block out = philox::philox4x32_10(kat.ctr, kat.key0, kat.key1);
    for (int k = 0; k < 4; ++k) EXPECT_EQ(out.v[k], kat.out.v[k]) << "word " << k;
  }
}

TEST(Philox, BoxMullerStaysFiniteAtTheExtremes) {
  float z0, z1;
  philox::box_muller(0, 0, &z0, &z1);  // the smallest u: the largest radius
  EXPECT_NEAR(z0, std::sqrt(-2 * std::log(0x1p-33)), 1e-5);
  philox::box_muller(0xffffffffu, 0xffffffffu, &z0, &z1);  // u rounds to 1: radius 0
  EXPECT_EQ(z0, 0.0f);
  EXPECT_EQ(z1, 0.0f);
}

TEST(GaussianNoise, HasTheRequestedMeanAndVariance) {
  const int64_t n = 1 << 20;
  const double stddev = 2.5;
  Tensor x = Tensor::zeros(Shape{n}, DType::f64);
  kernels::add_gaussian_noise(x, stddev, /*seed=*/42, /*offset=*/0);
  double sum = 0, sum_sq = 0, sum_4 = 0;
  int64_t within_one_sigma = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double z = x.as<double>()[i] / stddev;
    sum += z;
    sum_sq += z * z;
    sum_4 += z * z * z * z;
    within_one_sigma += std::abs(z) < 1;
  }
  const double mean = sum / n, variance = sum_sq / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 5 / std::sqrt(static_cast<double>(n)));       // 5 standard errors
  EXPECT_NEAR(variance, 1.0, 5 * std::sqrt(2.0 / static_cast<double>(n)));
  EXPECT_NEAR(sum_4 / n, 3.0, 0.05);                                    // Gaussian kurtosis
  EXPECT_NEAR(static_cast<double>(within_one_sigma) / n, 0.682689, 0.003);
}

TEST(GaussianNoise, IsReproducibleFromSeedAndOffset) {
  Rng rng(11);
  const Tensor x = random_tensor(Shape{1001}, rng, 1.0, DType::f32);
  auto noised = [&](uint64_t seed, uint64_t offset) {
    Tensor y = x.clone();
    kernels::add_gaussian_noise(y, 0.5, seed, offset);
    return y;
  };
  const Tensor a = noised(7, 13);
  EXPECT_EQ(relative_error(noised(7, 13), a), 0.0);
  EXPECT_GT(relative_error(noised(7, 14), a), 1e-3);
  EXPECT_GT(relative_error(noised(8, 13), a), 1e-3);
  // Offsets index one stream: the tensor's two parts with consecutive offsets draw what one call
  // over the whole does (the split at 5 is not a multiple of Philox's 4 normals).
  Tensor split = x.clone();
  kernels::add_gaussian_noise(split.rows(0, 5), 0.5, 7, 13);
  kernels::add_gaussian_noise(split.rows(5, 1001), 0.5, 7, 13 + 5);
  EXPECT_EQ(relative_error(split, a), 0.0);
}

TEST(GaussianNoise, Float32AndFloat64DrawTheSameNumbers) {
  Tensor x32 = Tensor::zeros(Shape{333}, DType::f32), x64 = Tensor::zeros(Shape{333}, DType::f64);
  kernels::add_gaussian_noise(x32, 1.0, 3, 2);
  kernels::add_gaussian_noise(x64, 1.0, 3, 2);
  EXPECT_LT(relative_error(x32.to(DType::f64), x64), 1e-7);
}

TEST(Clip, GlobalNormAndScaleAllCoverEveryTensor) {
  Rng rng(12);
  const std::vector<Tensor> tensors = {random_tensor(Shape{3, 5}, rng), random_tensor(Shape{7}, rng, 2.0, DType::f32),
                                       random_tensor(Shape{1}, rng)};
  const std::vector<View> views(tensors.begin(), tensors.end());
  double expected = 0;
  for (const Tensor& t : tensors)
    for (int64_t i = 0; i < t.numel(); ++i) expected += test::element(t, i) * test::element(t, i);
  EXPECT_NEAR(kernels::global_norm(views), std::sqrt(expected), 1e-12 * std::sqrt(expected));
  EXPECT_EQ(kernels::global_norm({}), 0.0);

  std::vector<Tensor> before;
  for (const Tensor& t : tensors) before.push_back(t.to(DType::f64));
  kernels::scale_all(views, -0.25);
  for (size_t k = 0; k < tensors.size(); ++k)
    for (int64_t i = 0; i < tensors[k].numel(); ++i)
      EXPECT_DOUBLE_EQ(test::element(tensors[k], i), -0.25 * before[k].as<double>()[i]);
}

TEST(Clip, AListLivesOnOneDevice) {
  Tensor host = Tensor::zeros(Shape{4}, DType::f32);
  const std::vector<View> mixed = {host, fake_gpu_view(Shape{4})};
  const std::string error = test::error_of<Error>([&] { kernels::global_norm(mixed); });
  EXPECT_NE(error.find("global_norm[1]"), std::string::npos) << error;
  EXPECT_NE(error.find("one device"), std::string::npos) << error;
}

TEST(AdamW, StepAllMatchesOneStepPerTensor) {
  Rng rng(13);
  const kernels::AdamWHyper h{.lr = 0.01, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.1};
  const Shape shapes[] = {Shape{4, 3}, Shape{17}, Shape{1}};
  std::vector<Tensor> p, g, m, v;
  for (const Shape& s : shapes) {
    p.push_back(random_tensor(s, rng));
    g.push_back(random_tensor(s, rng));
    m.push_back(Tensor::zeros(s, DType::f64));
    v.push_back(Tensor::zeros(s, DType::f64));
  }
  std::vector<Tensor> p2, m2, v2;
  for (size_t i = 0; i < p.size(); ++i) {
    p2.push_back(p[i].clone());
    m2.push_back(m[i].clone());
    v2.push_back(v[i].clone());
  }
  const std::vector<View> pv(p.begin(), p.end()), gv(g.begin(), g.end()), mv(m.begin(), m.end()),
      vv(v.begin(), v.end());
  for (int step = 1; step <= 3; ++step) {
    kernels::adamw_step_all(pv, gv, mv, vv, h, step);
    for (size_t i = 0; i < p.size(); ++i) kernels::adamw_step(p2[i], g[i], m2[i], v2[i], h, step);
  }
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_EQ(relative_error(p[i], p2[i]), 0.0);
    EXPECT_EQ(relative_error(v[i], v2[i]), 0.0);
  }
  EXPECT_THROW(kernels::adamw_step_all(pv, std::span(gv).first(2), mv, vv, h, 1), Error);
}

TEST(KernelsDispatch, CopyMovesBytesBetweenHostViews) {
  Rng rng(14);
  const Tensor a = random_tensor(Shape{3, 4}, rng, 1.0, DType::f32);
  Tensor b = Tensor::zeros(Shape{12}, DType::f32);
  kernels::copy(b, a);
  EXPECT_EQ(relative_error(b, a.reshaped(Shape{12})), 0.0);
  EXPECT_THROW(kernels::copy(Tensor::zeros(Shape{12}, DType::f64), a), Error);
}

TEST(KernelsDispatch, MixedDevicesAreRejectedBeforeAnyWork) {
  Tensor y = Tensor::zeros(Shape{4}, DType::f32);
  const std::string error = test::error_of<Error>([&] { kernels::axpy(y, fake_gpu_view(Shape{4}), 1.0); });
  EXPECT_NE(error.find("axpy"), std::string::npos) << error;
  EXPECT_NE(error.find("one device"), std::string::npos) << error;
}

TEST(KernelsDispatch, GpuViewsNeedCudaAndAGpuDtype) {
  // f64 is a CPU reference dtype: a CUDA build rejects it on the GPU, a CPU build rejects any GPU view.
  const View x = fake_gpu_view(Shape{2, 4}, DType::f64), w = fake_gpu_view(Shape{4}, DType::f64);
  const View rstd = fake_gpu_view(Shape{2}, DType::f64);
  const std::string error = test::error_of<Error>([&] { kernels::rmsnorm_forward(x, rstd, x, w, 1e-5); });
  EXPECT_NE(error.find("rmsnorm_forward"), std::string::npos) << error;
#ifdef FE_HAVE_CUDA
  EXPECT_NE(error.find("f32 or bf16"), std::string::npos) << error;
#else
  EXPECT_NE(error.find("built without CUDA"), std::string::npos) << error;
#endif
}

TEST(Tensor, ToDeviceOnTheHostIsAnIndependentCopy) {
  Rng rng(15);
  const Tensor a = random_tensor(Shape{2, 3}, rng);
  const Tensor b = a.to_device(Device::cpu);
  EXPECT_NE(a.data(), b.data());
  EXPECT_EQ(b.device(), Device::cpu);
  EXPECT_EQ(relative_error(b, a), 0.0);
}

}  // namespace
}  // namespace fe
