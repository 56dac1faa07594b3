// The CUDA twins of kernels/linear.h (kernels/cuda/linear.cu, cuBLASLt) against the CPU twin:
// random inputs, NaN-poisoned outputs where the op overwrites them, several shapes (M not a
// multiple of 16, LoRA ranks 8 and 16, in/out from 64 to 2048), with and without bias and LoRA,
// overwriting and accumulating, aligned views and views one element past a 16-byte boundary. The
// CPU computes in f32 on the same (bf16-rounded) inputs; tolerances are relative L2 errors, 1e-5 for
// f32 and 2e-2 for bf16 (the GPU also rounds xa, dxa and the LoRA term to bf16 on the way).
// Skipped without a GPU (tests/gpu_util.h).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "kernels/elementwise.h"
#include "kernels/linear.h"
#include "tests/gpu_util.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using namespace test;  // tests/gpu_util.h: random_host, gpu, cpu_f32, poisoned, misaligned_copy, ...

double tolerance(DType dtype) { return dtype == DType::bf16 ? 2e-2 : 1e-5; }

void expect_close(const Tensor& gpu_result, const Tensor& cpu_result, DType dtype, const std::string& what) {
  test::expect_close(gpu_result, cpu_result, dtype, tolerance(dtype), what);
}

// On the GPU, misaligned or not.
Tensor place(const Tensor& host, bool aligned) { return aligned ? gpu(host) : misaligned_copy(gpu(host)); }

TEST(GpuLinear, GemmEveryTransposeAlphaAndBeta) {
  FE_REQUIRE_GPU();
  Rng rng(21);
  // m, n, k: odd sizes, K = 1, and a long K.
  const int64_t shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {37, 64, 129}, {100, 2048, 64}, {130, 96, 2048}, {16, 8, 1}};
  for (DType dtype : kGpuDtypes)
    for (const auto& s : shapes)
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (double beta : {0.0, 1.0, -0.5}) {
            const int64_t m = s[0], n = s[1], k = s[2];
            const bool aligned = (m + n + k + (ta ? 1 : 0)) % 2 == 0;
            const Tensor a = random_host(ta ? Shape{k, m} : Shape{m, k}, dtype, rng);
            const Tensor b = random_host(tb ? Shape{n, k} : Shape{k, n}, dtype, rng);
            const Tensor c0 = random_host(Shape{m, n}, dtype, rng);
            Tensor c = beta == 0.0 ? poisoned(c0.shape(), dtype) : place(c0, aligned);
            kernels::gemm(c, place(a, aligned), ta, place(b, aligned), tb, 1.5, beta);
            Tensor rc = cpu_f32(c0);
            kernels::gemm(rc, cpu_f32(a), ta, cpu_f32(b), tb, 1.5, beta);
            expect_close(c, rc, dtype,
                         "gemm m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                             " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) +
                             " beta=" + std::to_string(beta) + (aligned ? "" : " misaligned"));
          }
}

TEST(GpuLinear, GemmBf16InputsIntoF32Output) {
  FE_REQUIRE_GPU();
  Rng rng(22);
  for (double beta : {0.0, 1.0}) {
    const Tensor a = random_host(Shape{333, 48}, DType::bf16, rng), b = random_host(Shape{333, 160}, DType::bf16, rng);
    const Tensor c0 = random_host(Shape{48, 160}, DType::f32, rng);
    Tensor c = beta == 0.0 ? poisoned(c0.shape(), DType::f32) : gpu(c0);
    kernels::gemm(c, gpu(a), true, gpu(b), false, 0.25, beta);  // a gradient's shape: Σ over 333 rows
    Tensor rc = cpu_f32(c0);
    kernels::gemm(rc, cpu_f32(a), true, cpu_f32(b), false, 0.25, beta);
    // Inputs are exact bf16 values and the sum is fp32, so this is as tight as f32.
    expect_close(c, rc, DType::f32, "gemm bf16·bf16 → f32 beta=" + std::to_string(beta));
  }
}

TEST(GpuLinear, GemmWithEmptyInnerDimensionScalesC) {
  FE_REQUIRE_GPU();
  Rng rng(23);
  for (DType dtype : kGpuDtypes) {
    const Tensor c0 = random_host(Shape{9, 5}, dtype, rng);
    Tensor a = Tensor::empty(Shape{9, 0}, dtype, Device::cuda), b = Tensor::empty(Shape{0, 5}, dtype, Device::cuda);
    Tensor c = gpu(c0);
    kernels::gemm(c, a, false, b, false, 1.0, 0.5);
    Tensor rc = cpu_f32(c0);
    kernels::scale(rc, 0.5);
    expect_close(c, rc, dtype, "gemm K=0");
  }
}

TEST(GpuLinear, GemmRejectsMixedInputDtypes) {
  FE_REQUIRE_GPU();
  Tensor a = Tensor::zeros(Shape{4, 4}, DType::f32, Device::cuda), b = Tensor::zeros(Shape{4, 4}, DType::bf16, Device::cuda);
  Tensor c = Tensor::zeros(Shape{4, 4}, DType::f32, Device::cuda);
  EXPECT_THROW(kernels::gemm(c, a, false, b, false, 1.0, 0.0), Error);
  Tensor host = Tensor::zeros(Shape{4, 4}, DType::f32);
  EXPECT_THROW(kernels::gemm(c, a, false, host, false, 1.0, 0.0), Error);
}

struct LinearShape {
  int64_t m, in, out, rank;
};
// M not a multiple of 16; ranks 8 and 16; in/out from 64 to 2048.
const LinearShape kShapes[] = {{1, 64, 64, 8}, {37, 64, 96, 8}, {300, 256, 128, 16}, {129, 2048, 64, 16},
                               {17, 64, 2048, 8}, {255, 512, 1536, 16}};

// One layer's inputs on the host (dtype-rounded), its CPU reference run and GPU placement.
struct Layer {
  Tensor x, w, bias, a, b;
  double scale = 2.0;
};

Layer random_layer(const LinearShape& s, DType dtype, Rng& rng) {
  Layer l;
  l.x = random_host(Shape{s.m, s.in}, dtype, rng);
  l.w = random_host(Shape{s.out, s.in}, dtype, rng);
  l.bias = random_host(Shape{s.out}, dtype, rng, 10.0);  // comparable to x·Wᵀ, so a lost bias shows
  l.a = random_host(Shape{s.rank, s.in}, dtype, rng);
  l.b = random_host(Shape{s.out, s.rank}, dtype, rng);
  return l;
}

std::string describe(const LinearShape& s, bool bias, bool lora, bool aligned) {
  return "M=" + std::to_string(s.m) + " in=" + std::to_string(s.in) + " out=" + std::to_string(s.out) +
         " r=" + std::to_string(s.rank) + (bias ? " bias" : "") + (lora ? " lora" : "") +
         (aligned ? "" : " misaligned");
}

TEST(GpuLinear, ForwardWithAndWithoutBiasAndLora) {
  FE_REQUIRE_GPU();
  Rng rng(24);
  for (DType dtype : kGpuDtypes)
    for (const LinearShape& s : kShapes)
      for (bool with_bias : {false, true})
        for (bool with_lora : {false, true})
          for (bool aligned : {true, false}) {
            if (!aligned && s.m * s.in * s.out > 1 << 24) continue;  // the misaligned path on the small shapes
            const Layer l = random_layer(s, dtype, rng);
            const std::string what = describe(s, with_bias, with_lora, aligned);
            Tensor y = place(poisoned(Shape{s.m, s.out}, dtype), aligned);
            Tensor xa = with_lora ? place(poisoned(Shape{s.m, s.rank}, dtype), aligned) : Tensor{};
            const Tensor ga = place(l.a, aligned), gb = place(l.b, aligned);
            const kernels::LoraBranch lora = with_lora ? kernels::LoraBranch{ga, gb, l.scale} : kernels::LoraBranch{};
            kernels::linear_forward(y, xa, place(l.x, aligned), place(l.w, aligned),
                                    with_bias ? place(l.bias, aligned) : Tensor{}, lora);

            Tensor ry = Tensor::empty(y.shape(), DType::f32);
            Tensor rxa = with_lora ? Tensor::empty(Shape{s.m, s.rank}, DType::f32) : Tensor{};
            const Tensor ra = cpu_f32(l.a), rb = cpu_f32(l.b);
            const kernels::LoraBranch rlora = with_lora ? kernels::LoraBranch{ra, rb, l.scale} : kernels::LoraBranch{};
            kernels::linear_forward(ry, rxa, cpu_f32(l.x), cpu_f32(l.w), with_bias ? cpu_f32(l.bias) : Tensor{}, rlora);
            expect_close(y, ry, dtype, "linear_forward y " + what);
            if (with_lora) expect_close(xa, rxa, dtype, "linear_forward xa " + what);
          }
}

// The backward from the GPU forward's own xa, so both sides start from the same values. Gradients
// start random (they accumulate); dx is poisoned unless accumulating. `f32_grads`: dA, dB, dW,
// dbias in f32 beside bf16 activations (the engine's mixed precision).
void check_backward(DType dtype, bool f32_grads, const LinearShape& s, bool with_bias, bool with_lora,
                    bool accumulate_dx, bool aligned, Rng& rng) {
  const Layer l = random_layer(s, dtype, rng);
  const DType grad_dtype = f32_grads ? DType::f32 : dtype;
  const std::string what = describe(s, with_bias, with_lora, aligned) + (accumulate_dx ? " accumulate_dx" : "") +
                           (f32_grads ? " f32 grads" : "");
  const Tensor gx = place(l.x, aligned), gw = place(l.w, aligned), ga = place(l.a, aligned), gb = place(l.b, aligned);
  const kernels::LoraBranch lora = with_lora ? kernels::LoraBranch{ga, gb, l.scale} : kernels::LoraBranch{};
  Tensor y = place(poisoned(Shape{s.m, s.out}, dtype), aligned);
  Tensor xa = with_lora ? place(poisoned(Shape{s.m, s.rank}, dtype), aligned) : Tensor{};
  kernels::linear_forward(y, xa, gx, gw, Tensor{}, lora);

  const Tensor dy = random_host(Shape{s.m, s.out}, dtype, rng), dx0 = random_host(Shape{s.m, s.in}, dtype, rng);
  const Tensor da0 = random_host(l.a.shape(), grad_dtype, rng), db0 = random_host(l.b.shape(), grad_dtype, rng);
  const Tensor dw0 = random_host(l.w.shape(), grad_dtype, rng), dbias0 = random_host(l.bias.shape(), grad_dtype, rng);
  kernels::LinearGrads g;
  Tensor dx = accumulate_dx ? place(dx0, aligned) : place(poisoned(dx0.shape(), dtype), aligned);
  Tensor da = place(da0, aligned), db = place(db0, aligned), dw = place(dw0, aligned);
  Tensor dbias = place(dbias0, aligned);
  g.dx = dx;
  g.accumulate_dx = accumulate_dx;
  if (with_lora) {
    g.da = da;
    g.db = db;
  }
  g.dw = dw;
  if (with_bias) g.dbias = dbias;
  kernels::linear_backward(g, place(dy, aligned), gx, xa, gw, lora);

  const Tensor ra = cpu_f32(l.a), rb = cpu_f32(l.b);
  const kernels::LoraBranch rlora = with_lora ? kernels::LoraBranch{ra, rb, l.scale} : kernels::LoraBranch{};
  kernels::LinearGrads rg;
  Tensor rdx = accumulate_dx ? cpu_f32(dx0) : Tensor::empty(dx0.shape(), DType::f32);
  Tensor rda = cpu_f32(da0), rdb = cpu_f32(db0), rdw = cpu_f32(dw0), rdbias = cpu_f32(dbias0);
  rg.dx = rdx;
  rg.accumulate_dx = accumulate_dx;
  if (with_lora) {
    rg.da = rda;
    rg.db = rdb;
  }
  rg.dw = rdw;
  if (with_bias) rg.dbias = rdbias;
  const Tensor rxa = with_lora ? cpu_f32(xa) : Tensor{};
  kernels::linear_backward(rg, cpu_f32(dy), cpu_f32(l.x), rxa, cpu_f32(l.w), rlora);

  // f32 gradients from bf16 operands: the products are exact, but dA comes from the bf16-rounded
  // dxa, so the bf16 tolerance applies to all of them.
  expect_close(dx, rdx, dtype, "linear_backward dx " + what);
  expect_close(dw, rdw, dtype, "linear_backward dW " + what);
  if (with_lora) {
    expect_close(da, rda, dtype, "linear_backward dA " + what);
    expect_close(db, rdb, dtype, "linear_backward dB " + what);
  }
  if (with_bias) expect_close(dbias, rdbias, dtype, "linear_backward dbias " + what);
}

TEST(GpuLinear, BackwardEveryGradientAndAccumulateFlag) {
  FE_REQUIRE_GPU();
  Rng rng(25);
  for (DType dtype : kGpuDtypes)
    for (const LinearShape& s : kShapes)
      for (bool with_bias : {false, true})
        for (bool with_lora : {false, true})
          for (bool accumulate_dx : {false, true}) {
            const bool aligned = !(s.m * s.in * s.out <= 1 << 24 && with_bias && accumulate_dx);
            check_backward(dtype, false, s, with_bias, with_lora, accumulate_dx, aligned, rng);
          }
}

TEST(GpuLinear, BackwardF32GradientsBesideBf16Activations) {
  FE_REQUIRE_GPU();
  Rng rng(26);
  for (const LinearShape& s : kShapes) check_backward(DType::bf16, true, s, true, true, false, true, rng);
}

TEST(GpuLinear, BiasGradientIsDeterministic) {
  FE_REQUIRE_GPU();
  Rng rng(27);
  const Tensor x = random_host(Shape{1000, 64}, DType::f32, rng), w = random_host(Shape{96, 64}, DType::f32, rng);
  const Tensor dy = gpu(random_host(Shape{1000, 96}, DType::f32, rng));
  Tensor first = Tensor::zeros(Shape{96}, DType::f32, Device::cuda), second = Tensor::zeros(Shape{96}, DType::f32, Device::cuda);
  for (Tensor* dbias : {&first, &second}) {
    kernels::LinearGrads g;
    g.dbias = *dbias;
    kernels::linear_backward(g, dy, gpu(x), Tensor{}, gpu(w), kernels::LoraBranch{});
  }
  const Tensor a = first.to_device(Device::cpu), b = second.to_device(Device::cpu);
  for (int64_t i = 0; i < 96; ++i) EXPECT_EQ(a.as<float>()[i], b.as<float>()[i]) << i;
}

}  // namespace
}  // namespace fe
