// The CUDA twins of cross_entropy (kernels/cross_entropy.h) and lora_per_example_sq_norms
// (kernels/linear.h) against their CPU twins, as in tests/gpu_kernels_test.cpp: random inputs, the
// CPU computing in f32 (or f64) on the same bf16-rounded values, outputs poisoned with NaN before
// the call, relative L2 errors 1e-5 for f32 and 1e-2 for bf16. The per-example norms are also
// checked against per-example gradients materialised on the CPU in f64, which is what they stand
// for. Skipped without a GPU (tests/gpu_util.h).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/linear.h"
#include "tests/gpu_util.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using namespace test;  // tests/gpu_util.h: random_host, gpu, poisoned, expect_close (1e-5 f32, 1e-2 bf16), ...

bool all_nan(const Tensor& t) {
  const Tensor h = host_f64(t);
  for (int64_t i = 0; i < h.numel(); ++i)
    if (!std::isnan(h.as<double>()[i])) return false;
  return true;
}

// ---- cross-entropy

// Targets in [0, V), every fifth row ignored, the first and last classes used.
Tensor random_targets(int64_t rows, int64_t vocab, Rng& rng) {
  Tensor t = Tensor::empty(Shape{rows}, DType::i32);
  const Tensor u = test::random_tensor(Shape{rows}, rng);
  for (int64_t n = 0; n < rows; ++n) {
    const double x = std::fabs(u.as<double>()[n]) * 1e6;
    t.as<int32_t>()[n] = n % 5 == 3 ? kernels::kIgnoreIndex : static_cast<int32_t>(std::fmod(x, static_cast<double>(vocab)));
  }
  t.as<int32_t>()[0] = 0;
  if (rows > 1) t.as<int32_t>()[1] = static_cast<int32_t>(vocab - 1);
  return t;
}

// Loss relative error: fp32 math on the same inputs, whatever the storage.
double loss_tolerance(DType dtype) { return dtype == DType::bf16 ? 1e-4 : 1e-5; }

void expect_loss_close(const kernels::CrossEntropyResult& got, const kernels::CrossEntropyResult& want, DType dtype,
                       const std::string& what) {
  EXPECT_EQ(got.count, want.count) << what;
  EXPECT_LT(std::fabs(got.loss_sum - want.loss_sum), loss_tolerance(dtype) * std::fabs(want.loss_sum))
      << what << " " << dtype_name(dtype) << ": " << got.loss_sum << " vs " << want.loss_sum;
}

struct XentCase {
  int64_t rows, vocab;
};
// V = 320 (64-thread blocks), an odd V (the one-element path), 32000 (Llama 2) in 512-thread blocks.
const XentCase kXentCases[] = {{37, 320}, {29, 1001}, {23, 32000}, {5, 12289}};

TEST(GpuCrossEntropy, LossAndGradientMatchTheCpuTwin) {
  FE_REQUIRE_GPU();
  Rng rng(31);
  const double grad_scale = 0.37;
  for (const XentCase& c : kXentCases)
    for (DType dtype : kGpuDtypes) {
      const std::string what = "V=" + std::to_string(c.vocab);
      const Tensor logits = random_host(Shape{c.rows, c.vocab}, dtype, rng, 3.0);
      const Tensor targets = random_targets(c.rows, c.vocab, rng);
      Tensor rdl = Tensor::empty(Shape{c.rows, c.vocab}, DType::f32);
      const auto want = kernels::cross_entropy(rdl, cpu_f32(logits), targets, grad_scale);

      const Tensor glogits = gpu(logits), gtargets = gpu(targets);
      Tensor dl = poisoned(logits.shape(), dtype);
      const auto got = kernels::cross_entropy(dl, glogits, gtargets, grad_scale);
      expect_loss_close(got, want, dtype, what);
      expect_close(dl, rdl, dtype, what + " dlogits");
      EXPECT_TRUE(same_bytes(glogits, logits)) << what << ": logits are read only";

      // Loss only: the same loss bits; a second call: the same bits everywhere.
      const auto loss_only = kernels::cross_entropy(View{}, glogits, gtargets, grad_scale);
      EXPECT_EQ(loss_only.loss_sum, got.loss_sum) << what;
      EXPECT_EQ(loss_only.count, got.count) << what;
      Tensor again = poisoned(logits.shape(), dtype);
      const auto got2 = kernels::cross_entropy(again, glogits, gtargets, grad_scale);
      EXPECT_EQ(got2.loss_sum, got.loss_sum) << what << ": deterministic";
      EXPECT_TRUE(same_bytes(again, dl)) << what << ": deterministic";

      // Misaligned views: the one-element path.
      Tensor odd = misaligned_copy(poisoned(logits.shape(), dtype));
      const auto got3 = kernels::cross_entropy(odd, misaligned_copy(glogits), gtargets, grad_scale);
      expect_loss_close(got3, want, dtype, what + " misaligned");
      expect_close(odd, rdl, dtype, what + " misaligned dlogits");
    }
}

TEST(GpuCrossEntropy, GradientMayOverwriteTheLogits) {
  FE_REQUIRE_GPU();
  Rng rng(32);
  for (const XentCase& c : kXentCases)
    for (DType dtype : kGpuDtypes) {
      const Tensor logits = random_host(Shape{c.rows, c.vocab}, dtype, rng, 2.0);
      const Tensor targets = random_targets(c.rows, c.vocab, rng);
      Tensor rz = cpu_f32(logits);
      const auto want = kernels::cross_entropy(rz, rz, targets, 1.0 / 3);  // the CPU twin in place too
      Tensor z = gpu(logits);
      const auto got = kernels::cross_entropy(z, z, gpu(targets), 1.0 / 3);
      expect_loss_close(got, want, dtype, "in place V=" + std::to_string(c.vocab));
      expect_close(z, rz, dtype, "in place dlogits V=" + std::to_string(c.vocab));
    }
}

TEST(GpuCrossEntropy, IgnoredRowsAndLargeLogits) {
  FE_REQUIRE_GPU();
  Rng rng(33);
  for (DType dtype : kGpuDtypes) {
    // Every row ignored: no loss, zero gradient.
    const Tensor logits = random_host(Shape{6, 320}, dtype, rng);
    Tensor ignored = Tensor::empty(Shape{6}, DType::i32);
    for (int n = 0; n < 6; ++n) ignored.as<int32_t>()[n] = kernels::kIgnoreIndex;
    Tensor dl = poisoned(logits.shape(), dtype);
    const auto none = kernels::cross_entropy(dl, gpu(logits), gpu(ignored), 1.0);
    EXPECT_EQ(none.count, 0);
    EXPECT_EQ(none.loss_sum, 0.0);
    EXPECT_TRUE(same_bytes(dl, Tensor::zeros(logits.shape(), dtype)));

    // Logits around ±80: exp would overflow without the max.
    const Tensor big = random_host(Shape{9, 4000}, dtype, rng, 40.0);
    const Tensor targets = random_targets(9, 4000, rng);
    Tensor rdl = Tensor::empty(big.shape(), DType::f32);
    const auto want = kernels::cross_entropy(rdl, cpu_f32(big), targets, 1.0);
    Tensor gdl = poisoned(big.shape(), dtype);
    const auto got = kernels::cross_entropy(gdl, gpu(big), gpu(targets), 1.0);
    expect_loss_close(got, want, dtype, "large logits");
    expect_close(gdl, rdl, dtype, "large logits dlogits");
  }
  // No rows at all.
  Tensor empty_logits = Tensor::empty(Shape{0, 320}, DType::f32, Device::cuda);
  Tensor empty_targets = Tensor::empty(Shape{0}, DType::i32, Device::cuda);
  const auto zero = kernels::cross_entropy(View{}, empty_logits, empty_targets, 1.0);
  EXPECT_EQ(zero.count, 0);
}

TEST(GpuCrossEntropy, TargetOutsideTheVocabularyIsAnError) {
  FE_REQUIRE_GPU();
  Rng rng(34);
  const Tensor logits = random_host(Shape{8, 320}, DType::bf16, rng);
  for (int32_t bad : {320, -1, -101, 1 << 30}) {
    Tensor targets = random_targets(8, 320, rng);
    targets.as<int32_t>()[5] = bad;
    targets.as<int32_t>()[6] = bad;  // the first bad row is named
    Tensor dl = poisoned(logits.shape(), DType::bf16);
    try {
      kernels::cross_entropy(dl, gpu(logits), gpu(targets), 1.0);
      ADD_FAILURE() << "target " << bad << " was accepted";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("cross_entropy"), std::string::npos) << message;
      EXPECT_NE(message.find("target " + std::to_string(bad) + " at row 5 "), std::string::npos) << message;
    }
    EXPECT_TRUE(all_nan(dl)) << "nothing is written when a target is bad";
    // In place: the logits survive.
    Tensor z = gpu(logits);
    EXPECT_THROW(kernels::cross_entropy(z, z, gpu(targets), 1.0), Error);
    EXPECT_TRUE(same_bytes(z, logits));
  }
  // The next call is not affected.
  const Tensor targets = random_targets(8, 320, rng);
  Tensor rdl = Tensor::empty(logits.shape(), DType::f32);
  const auto want = kernels::cross_entropy(rdl, cpu_f32(logits), targets, 1.0);
  Tensor dl = poisoned(logits.shape(), DType::bf16);
  expect_loss_close(kernels::cross_entropy(dl, gpu(logits), gpu(targets), 1.0), want, DType::bf16, "after an error");
  // The targets must be on the GPU with the logits.
  EXPECT_THROW(kernels::cross_entropy(dl, gpu(logits), targets, 1.0), Error);
}

// ---- per-example LoRA gradient norms

// Σ_b-wise ‖dB_b‖² + ‖dA_b‖² from per-example gradients materialised in f64 on the CPU:
// dB_b = scale·dy_bᵀ·xa_b [out, r], dA_b = dxa_bᵀ·x_b [r, in] with dxa = scale·dy·B.
std::vector<double> explicit_sq_norms(const Tensor& dy, const Tensor& x, const Tensor& xa, const Tensor& b,
                                      double scale, int64_t examples) {
  const Tensor d = dy.to(DType::f64), xx = x.to(DType::f64), a = xa.to(DType::f64), bb = b.to(DType::f64);
  const int64_t rows = dy.shape()[0], out = dy.shape()[1], in = x.shape()[1], rank = xa.shape()[1];
  const int64_t t_len = rows / examples;
  auto at = [](const Tensor& t, int64_t r, int64_t c) { return t.as<double>()[r * t.shape()[1] + c]; };
  std::vector<double> dxa(rows * rank, 0.0);
  for (int64_t m = 0; m < rows; ++m)
    for (int64_t j = 0; j < rank; ++j) {
      double s = 0;
      for (int64_t k = 0; k < out; ++k) s += at(d, m, k) * at(bb, k, j);
      dxa[m * rank + j] = scale * s;
    }
  std::vector<double> norms(examples, 0.0);
  for (int64_t e = 0; e < examples; ++e) {
    const int64_t first = e * t_len;
    for (int64_t o = 0; o < out; ++o)
      for (int64_t j = 0; j < rank; ++j) {
        double g = 0;
        for (int64_t t = first; t < first + t_len; ++t) g += at(d, t, o) * at(a, t, j);
        norms[e] += scale * scale * g * g;
      }
    for (int64_t j = 0; j < rank; ++j)
      for (int64_t i = 0; i < in; ++i) {
        double g = 0;
        for (int64_t t = first; t < first + t_len; ++t) g += dxa[t * rank + j] * at(xx, t, i);
        norms[e] += g * g;
      }
  }
  return norms;
}

struct GhostCase {
  int64_t examples, seq, rank, in, out;
};
const GhostCase kGhostCases[] = {{3, 17, 4, 64, 96}, {3, 64, 16, 64, 96}, {3, 17, 16, 96, 64},
                                 {3, 64, 4, 96, 64}, {2, 130, 20, 200, 136}};

TEST(GpuGhostNorms, MatchTheCpuTwinAndMaterialisedGradients) {
  FE_REQUIRE_GPU();
  Rng rng(41);
  for (const GhostCase& c : kGhostCases)
    for (DType dtype : kGpuDtypes)
      for (DType weight_dtype : {dtype, DType::f32})
        for (bool device_norms : {false, true}) {
          const std::string what = "B=" + std::to_string(c.examples) + " T=" + std::to_string(c.seq) + " r=" +
                                   std::to_string(c.rank) + " in=" + std::to_string(c.in) + " out=" +
                                   std::to_string(c.out) + " " + dtype_name(dtype) + " B " +
                                   dtype_name(weight_dtype) + (device_norms ? " norms on GPU" : " norms on host");
          const int64_t rows = c.examples * c.seq;
          const double scale = 2.0;
          const Tensor x = random_host(Shape{rows, c.in}, dtype, rng);
          const Tensor dy = random_host(Shape{rows, c.out}, dtype, rng, 0.1);
          const Tensor a = random_host(Shape{c.rank, c.in}, weight_dtype, rng, 0.1);
          const Tensor b = random_host(Shape{c.out, c.rank}, weight_dtype, rng, 0.1);
          // xa = x·Aᵀ as the forward leaves it, in the activations' dtype.
          Tensor xa32 = Tensor::empty(Shape{rows, c.rank}, DType::f32);
          kernels::gemm(xa32, cpu_f32(x), false, cpu_f32(a), true, 1.0, 0.0);
          const Tensor xa = xa32.to(dtype);

          Tensor base = Tensor::empty(Shape{c.examples}, DType::f64);
          for (int64_t e = 0; e < c.examples; ++e) base.as<double>()[e] = 0.25 * (e + 1);  // accumulated onto
          Tensor want = base.clone();
          kernels::lora_per_example_sq_norms(want, cpu_f32(dy), cpu_f32(x), cpu_f32(xa),
                                             kernels::LoraBranch{cpu_f32(a), cpu_f32(b), scale});
          const std::vector<double> exact = explicit_sq_norms(dy, x, xa, b, scale, c.examples);

          Tensor got = device_norms ? gpu(base) : base.clone();
          kernels::lora_per_example_sq_norms(got, gpu(dy), gpu(x), gpu(xa), kernels::LoraBranch{gpu(a), gpu(b), scale});
          const Tensor got_host = got.to_device(Device::cpu);
          Tensor got_delta = Tensor::empty(base.shape(), DType::f64), want_delta = got_delta.clone();
          Tensor exact_delta = got_delta.clone();
          for (int64_t e = 0; e < c.examples; ++e) {
            got_delta.as<double>()[e] = got_host.as<double>()[e] - base.as<double>()[e];
            want_delta.as<double>()[e] = want.as<double>()[e] - base.as<double>()[e];
            exact_delta.as<double>()[e] = exact[e];
          }
          // The inputs are the same values on both sides and both compute in fp32 or better, so
          // even bf16 storage agrees to fp32 rounding.
          EXPECT_LT(test::relative_error(got_delta, want_delta), 1e-5) << what << " vs the CPU twin";
          EXPECT_LT(test::relative_error(got_delta, exact_delta), 1e-5) << what << " vs materialised gradients";
          for (int64_t e = 0; e < c.examples; ++e)
            EXPECT_NEAR(got_delta.as<double>()[e], exact[e], 1e-5 * exact[e]) << what << " example " << e;

          // Deterministic.
          Tensor again = device_norms ? gpu(base) : base.clone();
          kernels::lora_per_example_sq_norms(again, gpu(dy), gpu(x), gpu(xa), kernels::LoraBranch{gpu(a), gpu(b), scale});
          EXPECT_TRUE(same_bytes(again, got)) << what << ": deterministic";
        }
}

TEST(GpuGhostNorms, RejectsMixedActivationDtypes) {
  FE_REQUIRE_GPU();
  Rng rng(42);
  const Tensor x = gpu(random_host(Shape{8, 16}, DType::bf16, rng));
  const Tensor dy = gpu(random_host(Shape{8, 24}, DType::f32, rng));
  const Tensor xa = gpu(random_host(Shape{8, 4}, DType::bf16, rng));
  const Tensor a = gpu(random_host(Shape{4, 16}, DType::f32, rng));
  const Tensor b = gpu(random_host(Shape{24, 4}, DType::f32, rng));
  Tensor norms = Tensor::zeros(Shape{2}, DType::f64);
  EXPECT_THROW(kernels::lora_per_example_sq_norms(norms, dy, x, xa, kernels::LoraBranch{a, b, 1.0}), Error);
  // Activations on the GPU, A on the host.
  const Tensor x32 = x.to(DType::f32), xa32 = xa.to(DType::f32);
  EXPECT_THROW(kernels::lora_per_example_sq_norms(norms, dy, x32, xa32,
                                                  kernels::LoraBranch{a.to_device(Device::cpu), b, 1.0}),
               Error);
  // The same arguments all on the GPU are accepted.
  kernels::lora_per_example_sq_norms(norms, dy, x32, xa32, kernels::LoraBranch{a, b, 1.0});
  EXPECT_GT(norms.as<double>()[0], 0.0);
}

}  // namespace
}  // namespace fe
