// The CUDA flash-attention twin (kernels/cuda/attention.cu) against the CPU twin
// (kernels/cpu/attention.cpp): random inputs, GPU outputs poisoned with NaN before each call so an
// unwritten element fails, relative L2 errors below 1e-4 for f32 and 2e-2 for bf16. The CPU runs in
// f32 on the same (bf16-rounded) inputs. B = 2, H = 8, Hkv ∈ {2, 8}, hd ∈ {64, 128},
// T ∈ {1, 17, 128, 257} (tile edges of 32 and 64), Tq < Tk for the forward, lse f32 and (the CPU
// convention) in the activations' dtype, and sliding windows W ∈ {1, 5, 32, 64, 100, 300} (within
// one tile, on tile edges, spanning tiles, longer than the sequence). Skipped without a GPU
// (tests/gpu_util.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "tests/gpu_util.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using namespace test;  // tests/gpu_util.h: random_host, gpu, cpu_f32, poisoned, same_bytes, ...

const int64_t kBatch = 2, kHeads = 8;
const int64_t kKvHeads[] = {2, 8};
const int64_t kHeadDims[] = {64, 128};
const int64_t kSeqs[] = {1, 17, 128, 257};

double tolerance(DType dtype) { return dtype == DType::bf16 ? 2e-2 : 1e-4; }

// ||a − b|| / max(||b||, 1e-3·sqrt(n)) of f64 host tensors: relative, except where the reference
// is all but zero. At T = 1 dq and dk are exactly zero on the CPU (dP − D cancels: out = v) and
// round-off on the GPU, which sums in another order.
double error_of(const Tensor& ha, const Tensor& hb) {
  EXPECT_EQ(ha.numel(), hb.numel());
  double diff = 0, ref = 0;
  for (int64_t i = 0; i < hb.numel(); ++i) {
    const double x = ha.as<double>()[i], y = hb.as<double>()[i];
    diff += (x - y) * (x - y);
    ref += y * y;
  }
  if (std::isnan(diff)) return diff;
  return std::sqrt(diff) / std::max(std::sqrt(ref), 1e-3 * std::sqrt(static_cast<double>(hb.numel())));
}

void expect_close(const Tensor& gpu_result, const Tensor& cpu_result, DType dtype, const std::string& what) {
  test::expect_close(gpu_result, cpu_result, dtype, tolerance(dtype), what, error_of);
}

std::string describe(int64_t tq, int64_t tk, int64_t kv_heads, int64_t hd, int64_t window) {
  return "Tq=" + std::to_string(tq) + " Tk=" + std::to_string(tk) + " Hkv=" + std::to_string(kv_heads) +
         " hd=" + std::to_string(hd) + " W=" + std::to_string(window);
}

const int64_t kWindows[] = {1, 5, 32, 64, 100, 300};

// Forward on both devices; out and lse compared.
void check_forward(DType dtype, DType lse_dtype, int64_t tq, int64_t tk, int64_t kv_heads, int64_t hd, Rng& rng,
                   int64_t window = 0) {
  const Shape qs{kBatch, tq, kHeads, hd}, kvs{kBatch, tk, kv_heads, hd}, ls{kBatch, kHeads, tq};
  const Tensor q = random_host(qs, dtype, rng), k = random_host(kvs, dtype, rng), v = random_host(kvs, dtype, rng);
  Tensor out = poisoned(qs, dtype), lse = poisoned(ls, lse_dtype);
  kernels::attention_forward(out, lse, gpu(q), gpu(k), gpu(v), window);
  Tensor cpu_out = Tensor::empty(qs, DType::f32), cpu_lse = Tensor::empty(ls, DType::f32);
  kernels::attention_forward(cpu_out, cpu_lse, cpu_f32(q), cpu_f32(k), cpu_f32(v), window);
  const std::string what = describe(tq, tk, kv_heads, hd, window) + " lse " + dtype_name(lse_dtype);
  expect_close(out, cpu_out, dtype, "forward out " + what);
  expect_close(lse, cpu_lse, dtype, "forward lse " + what);
}

TEST(GpuAttention, ForwardMatchesTheCpu) {
  FE_REQUIRE_GPU();
  Rng rng(11);
  for (DType dtype : kGpuDtypes)
    for (int64_t kv_heads : kKvHeads)
      for (int64_t hd : kHeadDims)
        for (int64_t t : kSeqs) check_forward(dtype, DType::f32, t, t, kv_heads, hd, rng);
}

TEST(GpuAttention, ForwardWithFewerQueriesThanKeys) {
  FE_REQUIRE_GPU();
  Rng rng(12);
  const int64_t cases[][2] = {{1, 1}, {1, 17}, {1, 257}, {17, 128}, {33, 257}, {128, 257}};
  for (DType dtype : kGpuDtypes)
    for (int64_t kv_heads : kKvHeads)
      for (int64_t hd : kHeadDims)
        for (const auto& c : cases) check_forward(dtype, DType::f32, c[0], c[1], kv_heads, hd, rng);
}

TEST(GpuAttention, ForwardWithLseInTheActivationDtype) {
  FE_REQUIRE_GPU();
  Rng rng(13);
  for (DType dtype : kGpuDtypes)
    for (int64_t t : {int64_t{17}, int64_t{257}}) check_forward(dtype, dtype, t, t, 2, 64, rng);
}

// Backward on both devices from the same out and lse (the CPU forward's, out rounded to dtype);
// dq, dk and dv compared. With lse_dtype bf16 both sides read the rounded lse.
void check_backward(DType dtype, DType lse_dtype, int64_t t, int64_t kv_heads, int64_t hd, Rng& rng,
                    int64_t window = 0) {
  const Shape qs{kBatch, t, kHeads, hd}, kvs{kBatch, t, kv_heads, hd}, ls{kBatch, kHeads, t};
  const Tensor q = random_host(qs, dtype, rng), k = random_host(kvs, dtype, rng), v = random_host(kvs, dtype, rng);
  const Tensor dout = random_host(qs, dtype, rng);
  Tensor cpu_out = Tensor::empty(qs, DType::f32), cpu_lse = Tensor::empty(ls, DType::f32);
  kernels::attention_forward(cpu_out, cpu_lse, cpu_f32(q), cpu_f32(k), cpu_f32(v), window);
  const Tensor out = cpu_out.to(dtype), lse = cpu_lse.to(lse_dtype);

  Tensor dq = poisoned(qs, dtype), dk = poisoned(kvs, dtype), dv = poisoned(kvs, dtype);
  kernels::attention_backward(dq, dk, dv, gpu(dout), gpu(q), gpu(k), gpu(v), gpu(out), gpu(lse), window);
  Tensor cdq = Tensor::empty(qs, DType::f32), cdk = Tensor::empty(kvs, DType::f32), cdv = Tensor::empty(kvs, DType::f32);
  kernels::attention_backward(cdq, cdk, cdv, cpu_f32(dout), cpu_f32(q), cpu_f32(k), cpu_f32(v), cpu_f32(out),
                              cpu_f32(lse), window);
  const std::string what = describe(t, t, kv_heads, hd, window) + " lse " + dtype_name(lse_dtype);
  expect_close(dq, cdq, dtype, "backward dq " + what);
  expect_close(dk, cdk, dtype, "backward dk " + what);
  expect_close(dv, cdv, dtype, "backward dv " + what);
}

TEST(GpuAttention, BackwardMatchesTheCpu) {
  FE_REQUIRE_GPU();
  Rng rng(21);
  for (DType dtype : kGpuDtypes)
    for (int64_t kv_heads : kKvHeads)
      for (int64_t hd : kHeadDims)
        for (int64_t t : kSeqs) check_backward(dtype, DType::f32, t, kv_heads, hd, rng);
}

TEST(GpuAttention, ForwardWithSlidingWindow) {
  FE_REQUIRE_GPU();
  Rng rng(14);
  const int64_t cases[][2] = {{17, 17}, {128, 128}, {257, 257}, {1, 257}, {33, 257}};
  for (DType dtype : kGpuDtypes)
    for (int64_t hd : kHeadDims)
      for (const auto& c : cases)
        for (int64_t window : kWindows) check_forward(dtype, DType::f32, c[0], c[1], 2, hd, rng, window);
}

TEST(GpuAttention, BackwardWithSlidingWindow) {
  FE_REQUIRE_GPU();
  Rng rng(24);
  for (DType dtype : kGpuDtypes)
    for (int64_t hd : kHeadDims)
      for (int64_t t : {int64_t{17}, int64_t{128}, int64_t{257}})
        for (int64_t window : kWindows) check_backward(dtype, DType::f32, t, 2, hd, rng, window);
}

TEST(GpuAttention, BackwardWithLseInTheActivationDtype) {
  FE_REQUIRE_GPU();
  Rng rng(22);
  check_backward(DType::bf16, DType::bf16, 128, 2, 128, rng);
}

// GPU forward then GPU backward (the engine's chain) against the CPU's chain, and the same bits
// on a second run (no atomics).
TEST(GpuAttention, ForwardThenBackwardIsDeterministic) {
  FE_REQUIRE_GPU();
  Rng rng(23);
  const int64_t t = 200, kv_heads = 2, hd = 64;
  const Shape qs{kBatch, t, kHeads, hd}, kvs{kBatch, t, kv_heads, hd}, ls{kBatch, kHeads, t};
  for (DType dtype : kGpuDtypes) {
    const Tensor q = random_host(qs, dtype, rng), k = random_host(kvs, dtype, rng), v = random_host(kvs, dtype, rng);
    const Tensor dout = random_host(qs, dtype, rng);
    const Tensor gq = gpu(q), gk = gpu(k), gv = gpu(v), gdout = gpu(dout);
    Tensor out = poisoned(qs, dtype), lse = poisoned(ls, DType::f32);
    kernels::attention_forward(out, lse, gq, gk, gv, 0);
    Tensor dq[2], dk[2], dv[2];
    for (int run = 0; run < 2; ++run) {
      dq[run] = poisoned(qs, dtype);
      dk[run] = poisoned(kvs, dtype);
      dv[run] = poisoned(kvs, dtype);
      kernels::attention_backward(dq[run], dk[run], dv[run], gdout, gq, gk, gv, out, lse, 0);
    }
    EXPECT_TRUE(same_bytes(dq[0], dq[1]) && same_bytes(dk[0], dk[1]) && same_bytes(dv[0], dv[1])) << dtype_name(dtype);

    Tensor cout = Tensor::empty(qs, DType::f32), clse = Tensor::empty(ls, DType::f32);
    kernels::attention_forward(cout, clse, cpu_f32(q), cpu_f32(k), cpu_f32(v), 0);
    Tensor cdq = Tensor::empty(qs, DType::f32), cdk = Tensor::empty(kvs, DType::f32), cdv = Tensor::empty(kvs, DType::f32);
    kernels::attention_backward(cdq, cdk, cdv, cpu_f32(dout), cpu_f32(q), cpu_f32(k), cpu_f32(v), cout, clse, 0);
    expect_close(dq[0], cdq, dtype, "chained dq");
    expect_close(dk[0], cdk, dtype, "chained dk");
    expect_close(dv[0], cdv, dtype, "chained dv");
  }
}

TEST(GpuAttention, RejectsUnsupportedHeadDimsAndMixedDtypes) {
  FE_REQUIRE_GPU();
  const Shape qs{1, 4, 2, 32}, kvs{1, 4, 2, 32}, ls{1, 2, 4};
  Tensor q = Tensor::zeros(qs, DType::f32, Device::cuda), k = Tensor::zeros(kvs, DType::f32, Device::cuda);
  Tensor out = Tensor::empty(qs, DType::f32, Device::cuda), lse = Tensor::empty(ls, DType::f32, Device::cuda);
  EXPECT_THROW(kernels::attention_forward(out, lse, q, k, k, 0), Error);  // hd 32
  const Shape q64{1, 4, 2, 64};
  Tensor qb = Tensor::zeros(q64, DType::bf16, Device::cuda), kf = Tensor::zeros(q64, DType::f32, Device::cuda);
  Tensor ob = Tensor::empty(q64, DType::bf16, Device::cuda);
  EXPECT_THROW(kernels::attention_forward(ob, lse, qb, kf, kf, 0), Error);  // q bf16, k f32
  Tensor lse_f16 = Tensor::empty(ls, DType::f16, Device::cuda);
  EXPECT_THROW(kernels::attention_forward(ob, lse_f16, qb, qb, qb, 0), Error);  // lse neither f32 nor bf16
}

}  // namespace
}  // namespace fe
