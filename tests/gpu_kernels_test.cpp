// Every CUDA twin against its CPU twin (ggml's test-backend-ops idea): random inputs (never zeros),
// several shapes including odd sizes and misaligned views that leave the 128-bit path, outputs
// poisoned with NaN before the call so an unwritten element fails the comparison. The CPU computes
// in f32 on the same (bf16-rounded) inputs; tolerances are relative L2 errors, 1e-5 for f32 and
// 1e-2 for bf16. Skipped without a GPU (tests/gpu_util.h).
#include <gtest/gtest.h>

#include <cmath>
#include <iterator>
#include <string>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/clip.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "tests/gpu_util.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using namespace test;  // tests/gpu_util.h: random_host, gpu, poisoned, expect_close (1e-5 f32, 1e-2 bf16), ...

std::vector<View> views_of(const std::vector<Tensor>& tensors) {
  return std::vector<View>(tensors.begin(), tensors.end());
}

// Element counts around the 128-bit packs (4 f32, 8 bf16) and the 16384-element chunks.
const int64_t kSizes[] = {1, 7, 8, 1000, 16384, 16389, 70001};

TEST(GpuKernels, TensorRoundTripAndCopy) {
  FE_REQUIRE_GPU();
  Rng rng(1);
  const Tensor host = random_host(Shape{3, 5}, DType::f32, rng);
  const Tensor device = gpu(host);
  EXPECT_EQ(device.device(), Device::cuda);
  EXPECT_TRUE(same_bytes(device.to_device(Device::cuda), host));  // device → device
  EXPECT_TRUE(same_bytes(device, host));
}

TEST(GpuKernels, ConvertMatchesTheCpuBitForBit) {
  FE_REQUIRE_GPU();
  Rng rng(2);
  const DType floats[] = {DType::f32, DType::f64, DType::bf16, DType::f16};
  for (int64_t n : {int64_t{1}, int64_t{13}, int64_t{40000}})
    for (DType from : floats)
      for (DType to : floats) {
        const Tensor src = random_host(Shape{n}, from, rng, 100.0);
        Tensor out = poisoned(Shape{n}, to);
        kernels::convert(out, gpu(src));
        EXPECT_TRUE(same_bytes(out, src.to(to))) << dtype_name(from) << " → " << dtype_name(to) << " n=" << n;
        Tensor odd = misaligned_copy(poisoned(Shape{n}, to));
        kernels::convert(odd, misaligned_copy(gpu(src)));
        EXPECT_TRUE(same_bytes(odd, src.to(to))) << "misaligned " << dtype_name(from) << " → " << dtype_name(to);
      }
  Tensor ids32 = Tensor::empty(Shape{1001}, DType::i32);
  for (int i = 0; i < 1001; ++i) ids32.as<int32_t>()[i] = i * 7919 - 3000000;
  Tensor ids64 = poisoned(Shape{1001}, DType::i64);
  kernels::convert(ids64, gpu(ids32));
  EXPECT_TRUE(same_bytes(ids64, ids32.to(DType::i64)));
  Tensor back = poisoned(Shape{1001}, DType::i32);
  kernels::convert(back, ids64);
  EXPECT_TRUE(same_bytes(back, ids32));
}

TEST(GpuKernels, FillWritesTheCpuBits) {
  FE_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64})
    for (int64_t n : kSizes)
      for (double value : {0.0, -3.25, 7.0}) {
        Tensor device = Tensor::empty(Shape{n}, dtype, Device::cuda);
        kernels::fill(device, value);
        Tensor host = Tensor::empty(Shape{n}, dtype);
        kernels::fill(host, value);
        EXPECT_TRUE(same_bytes(device, host)) << dtype_name(dtype) << " n=" << n << " value=" << value;
      }
}

TEST(GpuKernels, AxpyScaleAndSumSquares) {
  FE_REQUIRE_GPU();
  Rng rng(3);
  for (DType dtype : kGpuDtypes)
    for (int64_t n : kSizes)
      for (bool aligned : {true, false}) {
        const Tensor y = random_host(Shape{n}, dtype, rng), x = random_host(Shape{n}, dtype, rng);
        auto place = [&](const Tensor& t) { return aligned ? gpu(t) : misaligned_copy(gpu(t)); };
        Tensor gy = place(y);
        kernels::axpy(gy, place(x), -0.75);
        Tensor cy = cpu_f32(y);
        kernels::axpy(cy, cpu_f32(x), -0.75);
        expect_close(gy, cy, dtype, "axpy");

        kernels::scale(gy, 1.5);
        kernels::scale(cy, 1.5);
        expect_close(gy, cy, dtype, "scale");

        const double sq = kernels::sum_squares(gy);
        const double expected = kernels::sum_squares(cpu_f32(gy.to_device(Device::cpu)));
        EXPECT_NEAR(sq, expected, 1e-6 * expected) << "sum_squares n=" << n;
        EXPECT_EQ(kernels::sum_squares(gy), sq) << "sum_squares is deterministic";
      }
}

TEST(GpuKernels, GlobalNormAndScaleAllOverAList) {
  FE_REQUIRE_GPU();
  Rng rng(4);
  const int64_t sizes[] = {16, 70001, 1, 0, 4099, 16384};
  for (DType dtype : kGpuDtypes) {
    std::vector<Tensor> host, device;
    for (size_t k = 0; k < std::size(sizes); ++k) {
      host.push_back(random_host(Shape{sizes[k]}, dtype, rng));
      device.push_back(k % 2 ? misaligned_copy(gpu(host.back())) : gpu(host.back()));
    }
    std::vector<Tensor> reference;
    for (const Tensor& t : host) reference.push_back(cpu_f32(t));
    const double norm = kernels::global_norm(views_of(device));
    const double expected = kernels::global_norm(views_of(reference));
    EXPECT_NEAR(norm, expected, 1e-6 * expected) << dtype_name(dtype);
    EXPECT_EQ(kernels::global_norm(views_of(device)), norm) << "deterministic";

    kernels::scale_all(views_of(device), 0.3);
    kernels::scale_all(views_of(reference), 0.3);
    for (size_t k = 0; k < host.size(); ++k)
      if (host[k].numel() > 0) expect_close(device[k], reference[k], dtype, "scale_all[" + std::to_string(k) + "]");
  }
}

TEST(GpuKernels, GaussianNoiseDrawsTheCpuStream) {
  FE_REQUIRE_GPU();
  Rng rng(5);
  for (DType dtype : kGpuDtypes)
    for (int64_t n : kSizes)
      for (uint64_t offset : {uint64_t{0}, uint64_t{3}, uint64_t{1} << 40}) {
        const Tensor x = random_host(Shape{n}, dtype, rng);
        Tensor device = offset % 2 ? misaligned_copy(gpu(x)) : gpu(x);
        kernels::add_gaussian_noise(device, 0.7, 1234, offset);
        Tensor reference = cpu_f32(x);
        kernels::add_gaussian_noise(reference, 0.7, 1234, offset);
        expect_close(device, reference, dtype, "noise offset " + std::to_string(offset));
      }
}

TEST(GpuKernels, AdamWStepAndStepAll) {
  FE_REQUIRE_GPU();
  Rng rng(6);
  const kernels::AdamWHyper h{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.05};
  for (DType dtype : kGpuDtypes) {
    // [0] param, [1] grad, [2] m, [3] v: GPU tensors (every other one misaligned) and CPU twins.
    std::vector<Tensor> device[4], reference[4];
    for (int64_t n : kSizes) {
      Tensor v = test::random_tensor(Shape{n}, rng, 0.01);
      for (int64_t i = 0; i < n; ++i) v.as<double>()[i] = std::abs(v.as<double>()[i]);  // v ≥ 0
      const Tensor state[4] = {random_host(Shape{n}, dtype, rng), random_host(Shape{n}, dtype, rng, 0.1),
                               random_host(Shape{n}, dtype, rng, 0.01), v.to(dtype)};
      const bool misaligned = device[0].size() % 2 == 1;
      for (int k = 0; k < 4; ++k) {
        device[k].push_back(misaligned ? misaligned_copy(gpu(state[k])) : gpu(state[k]));
        reference[k].push_back(cpu_f32(state[k]));
      }
    }
    auto& [dp, dg, dm, dv] = device;
    auto& [cp, cg, cm, cv] = reference;
    for (int step = 1; step <= 3; ++step) {
      kernels::adamw_step_all(views_of(dp), views_of(dg), views_of(dm), views_of(dv), h, step);
      kernels::adamw_step_all(views_of(cp), views_of(cg), views_of(cm), views_of(cv), h, step);
    }
    kernels::adamw_step(dp[3], dg[3], dm[3], dv[3], h, 4);
    kernels::adamw_step(cp[3], cg[3], cm[3], cv[3], h, 4);
    for (size_t i = 0; i < dp.size(); ++i) {
      expect_close(dp[i], cp[i], dtype, "adamw param " + std::to_string(i));
      expect_close(dm[i], cm[i], dtype, "adamw m " + std::to_string(i));
      expect_close(dv[i], cv[i], dtype, "adamw v " + std::to_string(i));
    }
  }
}

TEST(GpuKernels, SwiGluForwardAndBackward) {
  FE_REQUIRE_GPU();
  Rng rng(7);
  for (DType dtype : kGpuDtypes)
    for (int64_t n : kSizes)
      for (bool aligned : {true, false}) {
        const Shape shape{n};
        const Tensor g = random_host(shape, dtype, rng, 2.0), u = random_host(shape, dtype, rng);
        const Tensor d = random_host(shape, dtype, rng);
        auto place = [&](const Tensor& t) { return aligned ? gpu(t) : misaligned_copy(gpu(t)); };
        Tensor out = place(poisoned(shape, dtype));
        kernels::swiglu_forward(out, place(g), place(u));
        Tensor ref = Tensor::empty(shape, DType::f32);
        kernels::swiglu_forward(ref, cpu_f32(g), cpu_f32(u));
        expect_close(out, ref, dtype, "swiglu_forward");

        Tensor dg = place(poisoned(shape, dtype)), du = place(poisoned(shape, dtype));
        kernels::swiglu_backward(dg, du, place(d), place(g), place(u));
        Tensor rdg = Tensor::empty(shape, DType::f32), rdu = Tensor::empty(shape, DType::f32);
        kernels::swiglu_backward(rdg, rdu, cpu_f32(d), cpu_f32(g), cpu_f32(u));
        expect_close(dg, rdg, dtype, "swiglu dgate");
        expect_close(du, rdu, dtype, "swiglu dup");
      }
}

TEST(GpuKernels, RmsNormForwardAndBackward) {
  FE_REQUIRE_GPU();
  Rng rng(8);
  // Rows × dim: odd dims leave the pack path; 600 rows span several dw slabs.
  const std::pair<int64_t, int64_t> shapes[] = {{1, 8}, {5, 37}, {64, 256}, {600, 1024}, {3, 4096}, {7, 4100}};
  // rstd in the rows' dtype, and f32 beside bf16 rows (what the bf16 model keeps).
  const std::pair<DType, DType> dtypes[] = {{DType::f32, DType::f32}, {DType::bf16, DType::bf16}, {DType::bf16, DType::f32}};
  for (const auto& [dtype, rstd_dtype] : dtypes)
    for (const auto& [rows, dim] : shapes)
      for (bool accumulate : {false, true}) {
        const Tensor x = random_host(Shape{rows, dim}, dtype, rng), w = random_host(Shape{dim}, dtype, rng);
        Tensor y = poisoned(x.shape(), dtype), rstd = poisoned(Shape{rows}, rstd_dtype);
        kernels::rmsnorm_forward(y, rstd, gpu(x), gpu(w), 1e-5);
        Tensor ry = Tensor::empty(x.shape(), DType::f32), rrstd = Tensor::empty(Shape{rows}, DType::f32);
        kernels::rmsnorm_forward(ry, rrstd, cpu_f32(x), cpu_f32(w), 1e-5);
        expect_close(y, ry, dtype, "rmsnorm y");
        expect_close(rstd, rrstd, rstd_dtype, "rmsnorm rstd");

        // The backward from the GPU's own rstd, so both sides start from the same values.
        const Tensor dy = random_host(x.shape(), dtype, rng), dx0 = random_host(x.shape(), dtype, rng);
        const Tensor dw0 = random_host(Shape{dim}, dtype, rng);
        const Tensor rstd_host = rstd.to_device(Device::cpu);
        Tensor dx = accumulate ? gpu(dx0) : poisoned(x.shape(), dtype), dw = gpu(dw0);
        kernels::rmsnorm_backward(dx, dw, gpu(dy), gpu(x), gpu(w), rstd, accumulate);
        Tensor rdx = accumulate ? cpu_f32(dx0) : Tensor::empty(x.shape(), DType::f32), rdw = cpu_f32(dw0);
        kernels::rmsnorm_backward(rdx, rdw, cpu_f32(dy), cpu_f32(x), cpu_f32(w), cpu_f32(rstd_host), accumulate);
        expect_close(dx, rdx, dtype, "rmsnorm dx");
        expect_close(dw, rdw, dtype, "rmsnorm dw");

        Tensor dw_again = gpu(dw0), dx_again = poisoned(x.shape(), dtype);
        kernels::rmsnorm_backward(dx_again, dw_again, gpu(dy), gpu(x), gpu(w), rstd, false);
        kernels::rmsnorm_backward(dx_again, dw_again, gpu(dy), gpu(x), gpu(w), rstd, false);
        Tensor dw_twice = gpu(dw0);
        kernels::rmsnorm_backward(dx_again, dw_twice, gpu(dy), gpu(x), gpu(w), rstd, false);
        kernels::rmsnorm_backward(dx_again, dw_twice, gpu(dy), gpu(x), gpu(w), rstd, false);
        EXPECT_TRUE(same_bytes(dw_again, dw_twice)) << "dw is deterministic";
        Tensor dx_frozen = poisoned(x.shape(), dtype);  // frozen weights: no dw
        kernels::rmsnorm_backward(dx_frozen, View{}, gpu(dy), gpu(x), gpu(w), rstd, false);
        EXPECT_TRUE(same_bytes(dx_frozen, dx_again));
      }
}

TEST(GpuKernels, RopeTablesAndRotation) {
  FE_REQUIRE_GPU();
  Rng rng(9);
  // Tokens × heads × head_dim; hd = 10 gives an odd half.
  const int64_t shapes[][3] = {{3, 2, 8}, {5, 3, 10}, {17, 4, 64}, {64, 8, 128}, {9, 32, 128}};
  for (DType dtype : kGpuDtypes)
    for (const auto& s : shapes) {
      const int64_t tokens = s[0], heads = s[1], hd = s[2], half = hd / 2;
      Tensor positions = Tensor::empty(Shape{tokens}, DType::i32);
      for (int64_t n = 0; n < tokens; ++n) positions.as<int32_t>()[n] = static_cast<int32_t>(n * 37 % 5000);
      Tensor inv_freq = Tensor::empty(Shape{half}, DType::f64);
      for (int64_t i = 0; i < half; ++i) inv_freq.as<double>()[i] = std::pow(10000.0, -2.0 * i / hd);
      Tensor cos = poisoned(Shape{tokens, half}, dtype), sin = poisoned(Shape{tokens, half}, dtype);
      kernels::rope_tables(cos, sin, gpu(positions), gpu(inv_freq));
      Tensor rcos = Tensor::empty(cos.shape(), DType::f32), rsin = Tensor::empty(sin.shape(), DType::f32);
      kernels::rope_tables(rcos, rsin, positions, inv_freq);
      expect_close(cos, rcos, dtype, "rope cos");
      expect_close(sin, rsin, dtype, "rope sin");

      const Tensor cos_host = cos.to_device(Device::cpu), sin_host = sin.to_device(Device::cpu);
      for (bool inverse : {false, true}) {
        const Tensor x = random_host(Shape{tokens, heads, hd}, dtype, rng);
        Tensor dx = gpu(x);
        kernels::rope_apply(dx, cos, sin, inverse);
        Tensor rx = cpu_f32(x);
        kernels::rope_apply(rx, cpu_f32(cos_host), cpu_f32(sin_host), inverse);
        expect_close(dx, rx, dtype, inverse ? "rope inverse" : "rope forward");
      }
    }
}

TEST(GpuKernels, EmbeddingForwardAndBackward) {
  FE_REQUIRE_GPU();
  Rng rng(10);
  const int64_t vocab = 50;
  for (DType dtype : kGpuDtypes)
    for (int64_t dim : {8, 13, 64, 4096})
      for (int64_t tokens : {1, 20, 300}) {
        Tensor ids = Tensor::empty(Shape{tokens}, DType::i32);
        for (int64_t n = 0; n < tokens; ++n) ids.as<int32_t>()[n] = static_cast<int32_t>((n * 7 + n * n) % vocab);
        const Tensor table = random_host(Shape{vocab, dim}, dtype, rng);
        Tensor out = poisoned(Shape{tokens, dim}, dtype);
        kernels::embedding_forward(out, gpu(ids), gpu(table));
        Tensor rout = Tensor::empty(out.shape(), DType::f32);
        kernels::embedding_forward(rout, ids, cpu_f32(table));
        expect_close(out, rout, dtype, "embedding_forward");

        const Tensor dout = random_host(Shape{tokens, dim}, dtype, rng);
        const Tensor dtable0 = random_host(table.shape(), dtype, rng);
        Tensor dtable = gpu(dtable0);
        kernels::embedding_backward(dtable, gpu(ids), gpu(dout));
        Tensor rdtable = cpu_f32(dtable0);
        kernels::embedding_backward(rdtable, ids, cpu_f32(dout));
        expect_close(dtable, rdtable, dtype, "embedding_backward");
        Tensor again = gpu(dtable0);
        kernels::embedding_backward(again, gpu(ids), gpu(dout));
        EXPECT_TRUE(same_bytes(again, dtable)) << "embedding_backward is deterministic";
      }
  Tensor bad = Tensor::empty(Shape{1}, DType::i32);
  bad.as<int32_t>()[0] = static_cast<int32_t>(vocab);
  Tensor out = poisoned(Shape{1, 8}, DType::f32);
  const Tensor table = gpu(random_host(Shape{vocab, 8}, DType::f32, rng));
  EXPECT_THROW(kernels::embedding_forward(out, gpu(bad), table), Error);
}

}  // namespace
}  // namespace fe
