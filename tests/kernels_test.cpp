// Every CPU op against an independent reference: forward against naive double-precision loops
// written here, backward against central finite differences (f64), and f32 against f64.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/half.h"
#include "kernels/linear.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using test::expect_gradient;
using test::random_tensor;
using test::relative_error;
using test::weighted_sum;

Tensor ids_tensor(std::vector<int32_t> ids) {
  Tensor t = Tensor::empty(Shape{static_cast<int64_t>(ids.size())}, DType::i32);
  std::copy(ids.begin(), ids.end(), t.as<int32_t>());
  return t;
}

TEST(Half, KnownEncodings) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1.0p-8f), 0x3f80);  // tie rounds to even (down)
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1.8p-8f), 0x3f81);  // above the tie rounds up
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);           // rounds to infinity
  EXPECT_EQ(f32_to_f16(0x1.0p-24f), 0x0001);         // smallest subnormal
  EXPECT_EQ(f32_to_f16(0x1.0p-25f), 0x0000);         // tie to even: zero
  EXPECT_EQ(f32_to_f16(-0.5f), 0xb800);
  EXPECT_EQ(f16_to_f32(0x0001), 0x1.0p-24f);
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
  for (uint32_t h = 0; h < 0x7c00; ++h)  // every finite positive f16 survives a round trip
    ASSERT_EQ(f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))), h);
}

TEST(Gemm, MatchesNaiveLoopsForEveryTranspose) {
  Rng rng(1);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t m = 5, n = 7, k = 3;
      Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, rng);
      Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, rng);
      Tensor c = random_tensor(Shape{m, n}, rng);
      Tensor expected = c.clone();
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t p = 0; p < k; ++p)
            s += (ta ? a.as<double>()[p * m + i] : a.as<double>()[i * k + p]) *
                 (tb ? b.as<double>()[j * k + p] : b.as<double>()[p * n + j]);
          expected.as<double>()[i * n + j] = 0.5 * s + 2.0 * expected.as<double>()[i * n + j];
        }
      kernels::gemm(c, a, ta, b, tb, 0.5, 2.0);
      EXPECT_LT(relative_error(c, expected), 1e-14) << "ta=" << ta << " tb=" << tb;
    }
}

TEST(Gemm, ShapeMismatchNamesOpAndShapes) {
  Tensor a = Tensor::zeros(Shape{2, 3}, DType::f32), b = Tensor::zeros(Shape{4, 5}, DType::f32);
  Tensor c = Tensor::zeros(Shape{2, 5}, DType::f32);
  try {
    kernels::gemm(c, a, false, b, false, 1, 0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gemm"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f32[2, 3]@cpu"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f32[4, 5]@cpu"), std::string::npos) << e.what();
  }
}

TEST(Embedding, ForwardGathersAndBackwardScatters) {
  Rng rng(2);
  Tensor table = random_tensor(Shape{6, 4}, rng);
  Tensor ids = ids_tensor({3, 0, 3, 5});
  Tensor out = Tensor::empty(Shape{4, 4}, DType::f64);
  kernels::embedding_forward(out, ids, table);
  for (int64_t n = 0; n < 4; ++n)
    for (int64_t d = 0; d < 4; ++d)
      EXPECT_EQ(out.as<double>()[n * 4 + d], table.as<double>()[ids.as<int32_t>()[n] * 4 + d]);
  Tensor r = random_tensor(out.shape(), rng);
  Tensor dtable = Tensor::zeros(table.shape(), DType::f64);
  kernels::embedding_backward(dtable, ids, r);
  expect_gradient("dtable", table, dtable, [&] {
    kernels::embedding_forward(out, ids, table);
    return weighted_sum(out, r);
  });
  EXPECT_THROW(kernels::embedding_forward(out, ids_tensor({0, 1, 6, 2}), table), Error);
}

TEST(RmsNorm, ForwardMatchesDefinitionAndBackwardMatchesFiniteDifferences) {
  Rng rng(3);
  const int64_t n = 5, d = 16;
  const double eps = 1e-5;
  Tensor x = random_tensor(Shape{n, d}, rng), w = random_tensor(Shape{d}, rng);
  Tensor y = Tensor::empty(x.shape(), DType::f64), rstd = Tensor::empty(Shape{n}, DType::f64);
  kernels::rmsnorm_forward(y, rstd, x, w, eps);
  for (int64_t i = 0; i < n; ++i) {
    double ms = 0;
    for (int64_t j = 0; j < d; ++j) ms += x.as<double>()[i * d + j] * x.as<double>()[i * d + j] / d;
    for (int64_t j = 0; j < d; ++j)
      EXPECT_NEAR(y.as<double>()[i * d + j], w.as<double>()[j] * x.as<double>()[i * d + j] / std::sqrt(ms + eps), 1e-12);
  }
  Tensor r = random_tensor(y.shape(), rng);
  Tensor dx = random_tensor(x.shape(), rng), dw = Tensor::zeros(w.shape(), DType::f64);
  const Tensor dx_before = dx.clone();
  kernels::rmsnorm_backward(dx, dw, r, x, w, rstd, /*accumulate=*/true);
  kernels::axpy(dx, dx_before, -1.0);  // what accumulate added is the gradient
  auto loss = [&] {
    kernels::rmsnorm_forward(y, rstd, x, w, eps);
    return weighted_sum(y, r);
  };
  expect_gradient("dx", x, dx, loss);
  expect_gradient("dw", w, dw, loss);
}

TEST(Rope, InverseUndoesForwardAndMatchesRotation) {
  Rng rng(4);
  const int64_t n = 6, h = 3, hd = 8;
  std::vector<double> inv_freq = {1.0, 0.3, 0.05, 0.001};
  const View freq{inv_freq.data(), DType::f64, Shape{4}, Device::cpu};
  Tensor positions = ids_tensor({0, 1, 2, 7, 100, 4095});
  Tensor cos = Tensor::empty(Shape{n, hd / 2}, DType::f64), sin = Tensor::empty(Shape{n, hd / 2}, DType::f64);
  kernels::rope_tables(cos, sin, positions, freq);
  Tensor x = random_tensor(Shape{n, h, hd}, rng);
  Tensor y = x.clone();
  kernels::rope_apply(y, cos, sin, false);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t head = 0; head < h; ++head)
      for (int64_t i = 0; i < hd / 2; ++i) {
        // (x_i + i·x_{i+hd/2})·e^{iθ}
        const double theta = positions.as<int32_t>()[t] * inv_freq[i];
        const double* xv = x.as<double>() + (t * h + head) * hd;
        const double* yv = y.as<double>() + (t * h + head) * hd;
        EXPECT_NEAR(yv[i], xv[i] * std::cos(theta) - xv[i + hd / 2] * std::sin(theta), 1e-12);
        EXPECT_NEAR(yv[i + hd / 2], xv[i + hd / 2] * std::cos(theta) + xv[i] * std::sin(theta), 1e-12);
      }
  // The backward (inverse rotation) is the gradient of the forward.
  Tensor r = random_tensor(x.shape(), rng);
  Tensor dx = r.clone();
  kernels::rope_apply(dx, cos, sin, true);
  expect_gradient("dx", x, dx, [&] {
    Tensor z = x.clone();
    kernels::rope_apply(z, cos, sin, false);
    return weighted_sum(z, r);
  });
  kernels::rope_apply(y, cos, sin, true);
  EXPECT_LT(relative_error(y, x), 1e-14);
}

// Naive GQA attention in double with the full score matrix and an explicit mask: the query at
// position p = Tk − Tq + i sees key j iff j ≤ p and, with a window W > 0, p − W < j (HF's
// causal mask and sliding_window overlay).
Tensor reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window = 0) {
  const int64_t B = q.shape()[0], Tq = q.shape()[1], H = q.shape()[2], hd = q.shape()[3];
  const int64_t Tk = k.shape()[1], G = k.shape()[2];
  std::vector<std::vector<bool>> visible(Tq, std::vector<bool>(Tk));
  for (int64_t i = 0; i < Tq; ++i)
    for (int64_t j = 0; j < Tk; ++j) {
      const int64_t p = Tk - Tq + i;
      visible[i][j] = j <= p && (window == 0 || j > p - window);
    }
  Tensor out = Tensor::zeros(q.shape(), DType::f64);
  auto at = [](const Tensor& t, int64_t b, int64_t s, int64_t h, int64_t e) {
    return t.as<double>()[((b * t.shape()[1] + s) * t.shape()[2] + h) * t.shape()[3] + e];
  };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h * G / H;
      for (int64_t i = 0; i < Tq; ++i) {
        std::vector<double> p(Tk, 0.0);
        double total = 0;
        for (int64_t j = 0; j < Tk; ++j) {
          if (!visible[i][j]) continue;
          double s = 0;
          for (int64_t e = 0; e < hd; ++e) s += at(q, b, i, h, e) * at(k, b, j, g, e);
          p[j] = std::exp(s / std::sqrt(static_cast<double>(hd)));
          total += p[j];
        }
        for (int64_t j = 0; j < Tk; ++j)
          for (int64_t e = 0; e < hd; ++e)
            out.as<double>()[((b * Tq + i) * H + h) * hd + e] += p[j] / total * at(v, b, j, g, e);
      }
    }
  return out;
}

struct AttentionCase {
  int64_t seq, window, kv_heads;
};

void PrintTo(const AttentionCase& c, std::ostream* os) {
  *os << "T=" << c.seq << " W=" << c.window << " Hkv=" << c.kv_heads;
}

class AttentionTest : public ::testing::TestWithParam<AttentionCase> {
 protected:
  static constexpr int64_t B = 2, H = 4, hd = 6;
  // Random f64 q [B, T, H, hd] and k, v [B, T, Hkv, hd] of the case's shape.
  struct Inputs {
    Tensor q, k, v;
  };
  Inputs random_inputs(uint64_t seed) const {
    Rng rng(seed);
    const auto [T, W, G] = GetParam();
    Inputs in{random_tensor(Shape{B, T, H, hd}, rng), random_tensor(Shape{B, T, G, hd}, rng),
              random_tensor(Shape{B, T, G, hd}, rng)};
    return in;
  }
};

TEST_P(AttentionTest, ForwardMatchesNaiveAndBackwardMatchesFiniteDifferences) {
  Rng rng(7);
  const auto [T, W, G] = GetParam();
  auto [q, k, v] = random_inputs(5);
  Tensor out = Tensor::empty(q.shape(), DType::f64), lse = Tensor::empty(Shape{B, H, T}, DType::f64);
  kernels::attention_forward(out, lse, q, k, v, W);
  EXPECT_LT(relative_error(out, reference_attention(q, k, v, W)), 1e-13);

  Tensor r = random_tensor(out.shape(), rng);
  Tensor dq = Tensor::empty(q.shape(), DType::f64), dk = Tensor::empty(k.shape(), DType::f64);
  Tensor dv = Tensor::empty(v.shape(), DType::f64);
  kernels::attention_backward(dq, dk, dv, r, q, k, v, out, lse, W);
  auto loss = [&] {
    kernels::attention_forward(out, lse, q, k, v, W);
    return weighted_sum(out, r);
  };
  if (W == 1) {  // each query reads only its own value: out = v whatever q and k are
    EXPECT_EQ(kernels::sum_squares(dq), 0.0);
    EXPECT_EQ(kernels::sum_squares(dk), 0.0);
  } else {
    expect_gradient("dq", q, dq, loss);
    expect_gradient("dk", k, dk, loss);
  }
  expect_gradient("dv", v, dv, loss);
}

// Decoding against a KV cache: the last Tq queries over all Tk keys give the rows of the
// full-sequence result, with and without a window.
TEST_P(AttentionTest, FewerQueriesThanKeysGiveTheFullSequenceRows) {
  const auto [T, W, G] = GetParam();
  const auto [q, k, v] = random_inputs(6);
  Tensor full = Tensor::empty(q.shape(), DType::f64), full_lse = Tensor::empty(Shape{B, H, T}, DType::f64);
  kernels::attention_forward(full, full_lse, q, k, v, W);
  for (int64_t tq : {int64_t{1}, T / 2}) {
    Tensor last_q = Tensor::empty(Shape{B, tq, H, hd}, DType::f64);
    Tensor expected = Tensor::empty(last_q.shape(), DType::f64);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < tq; ++i)
        for (int64_t e = 0; e < H * hd; ++e) {
          const int64_t from = (b * T + T - tq + i) * H * hd + e, to = (b * tq + i) * H * hd + e;
          last_q.as<double>()[to] = q.as<double>()[from];
          expected.as<double>()[to] = full.as<double>()[from];
        }
    Tensor out = Tensor::empty(last_q.shape(), DType::f64), lse = Tensor::empty(Shape{B, H, tq}, DType::f64);
    kernels::attention_forward(out, lse, last_q, k, v, W);
    EXPECT_LT(relative_error(out, expected), 1e-14) << "Tq=" << tq;
    EXPECT_LT(relative_error(out, reference_attention(last_q, k, v, W)), 1e-13) << "Tq=" << tq;
  }
}

INSTANTIATE_TEST_SUITE_P(CausalAndSlidingWindow, AttentionTest,
                         ::testing::Values(AttentionCase{5, 0, 1}, AttentionCase{5, 0, 2},
                                           AttentionCase{5, 0, 4},  // full causal
                                           AttentionCase{7, 3, 2}, AttentionCase{9, 4, 4},
                                           AttentionCase{8, 5, 1},                            // W < T
                                           AttentionCase{7, 1, 1}, AttentionCase{6, 1, 4},    // only itself
                                           AttentionCase{6, 6, 2}, AttentionCase{5, 9, 2}));  // W ≥ T

// A window at least as long as the sequence changes nothing; W = 1 returns each query's own value.
TEST(Attention, WindowEdgeCasesAreExact) {
  Rng rng(7);
  const int64_t B = 1, T = 6, H = 2, G = 1, hd = 4;
  Tensor q = random_tensor(Shape{B, T, H, hd}, rng), k = random_tensor(Shape{B, T, G, hd}, rng);
  Tensor v = random_tensor(Shape{B, T, G, hd}, rng);
  auto forward = [&](int64_t window) {
    Tensor out = Tensor::empty(q.shape(), DType::f64), lse = Tensor::empty(Shape{B, H, T}, DType::f64);
    kernels::attention_forward(out, lse, q, k, v, window);
    return out;
  };
  const Tensor full = forward(0);
  EXPECT_EQ(relative_error(forward(T), full), 0.0);
  EXPECT_EQ(relative_error(forward(T + 5), full), 0.0);
  EXPECT_GT(relative_error(forward(T - 1), full), 1e-3);
  const Tensor own = forward(1);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t e = 0; e < hd; ++e)
        EXPECT_NEAR(own.as<double>()[(t * H + h) * hd + e], v.as<double>()[t * hd + e], 1e-15);
  Tensor out = Tensor::empty(q.shape(), DType::f64), lse = Tensor::empty(Shape{B, H, T}, DType::f64);
  try {
    kernels::attention_forward(out, lse, q, k, v, -1);
    FAIL() << "expected an error for a negative window";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("attention_forward"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("window"), std::string::npos) << e.what();
  }
}

TEST(SwiGlu, ForwardAndBackward) {
  Rng rng(6);
  Tensor g = random_tensor(Shape{4, 9}, rng, 2.0), u = random_tensor(Shape{4, 9}, rng);
  Tensor out = Tensor::empty(g.shape(), DType::f64);
  kernels::swiglu_forward(out, g, u);
  for (int64_t i = 0; i < g.numel(); ++i) {
    const double gi = g.as<double>()[i];
    EXPECT_NEAR(out.as<double>()[i], gi / (1 + std::exp(-gi)) * u.as<double>()[i], 1e-14);
  }
  Tensor r = random_tensor(g.shape(), rng);
  Tensor dg = Tensor::empty(g.shape(), DType::f64), du = Tensor::empty(u.shape(), DType::f64);
  kernels::swiglu_backward(dg, du, r, g, u);
  auto loss = [&] {
    kernels::swiglu_forward(out, g, u);
    return weighted_sum(out, r);
  };
  expect_gradient("dgate", g, dg, loss);
  expect_gradient("dup", u, du, loss);
}

TEST(Linear, LoraForwardMatchesDefinitionAndEveryGradientMatchesFiniteDifferences) {
  Rng rng(7);
  const int64_t m = 6, in = 5, out = 4, rank = 3;
  const double scale = 1.7;
  Tensor x = random_tensor(Shape{2, 3, in}, rng), w = random_tensor(Shape{out, in}, rng);
  Tensor bias = random_tensor(Shape{out}, rng), a = random_tensor(Shape{rank, in}, rng);
  Tensor b = random_tensor(Shape{out, rank}, rng);
  Tensor y = Tensor::empty(Shape{2, 3, out}, DType::f64), xa = Tensor::empty(Shape{m, rank}, DType::f64);
  const kernels::LoraBranch lora{a, b, scale};
  kernels::linear_forward(y, xa, x, w, bias, lora);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double s = bias.as<double>()[o];
      for (int64_t j = 0; j < in; ++j) {
        double wj = w.as<double>()[o * in + j];
        for (int64_t p = 0; p < rank; ++p) wj += scale * b.as<double>()[o * rank + p] * a.as<double>()[p * in + j];
        s += x.as<double>()[i * in + j] * wj;
      }
      EXPECT_NEAR(y.as<double>()[i * out + o], s, 1e-12);
    }
  Tensor r = random_tensor(y.shape(), rng);
  kernels::LinearGrads g;
  Tensor dx = Tensor::empty(x.shape(), DType::f64), da = Tensor::zeros(a.shape(), DType::f64);
  Tensor db = Tensor::zeros(b.shape(), DType::f64), dw = Tensor::zeros(w.shape(), DType::f64);
  Tensor dbias = Tensor::zeros(bias.shape(), DType::f64);
  g.dx = dx;
  g.da = da;
  g.db = db;
  g.dw = dw;
  g.dbias = dbias;
  kernels::linear_backward(g, r, x, xa, w, lora);
  auto loss = [&] {
    kernels::linear_forward(y, xa, x, w, bias, lora);
    return weighted_sum(y, r);
  };
  expect_gradient("dx", x, dx, loss);
  expect_gradient("dA", a, da, loss);
  expect_gradient("dB", b, db, loss);
  expect_gradient("dW", w, dw, loss);
  expect_gradient("dbias", bias, dbias, loss);
}

TEST(CrossEntropy, LossAndGradientWithIgnoredRows) {
  Rng rng(8);
  Tensor logits = random_tensor(Shape{5, 7}, rng, 3.0);
  Tensor targets = ids_tensor({2, kernels::kIgnoreIndex, 6, 0, kernels::kIgnoreIndex});
  const double scale = 0.37;
  Tensor dlogits = Tensor::empty(logits.shape(), DType::f64);
  const auto result = kernels::cross_entropy(dlogits, logits, targets, scale);
  EXPECT_EQ(result.count, 3);
  double expected = 0;
  for (int64_t n = 0; n < 5; ++n) {
    const int32_t t = targets.as<int32_t>()[n];
    if (t == kernels::kIgnoreIndex) continue;
    double z = 0;
    for (int64_t i = 0; i < 7; ++i) z += std::exp(logits.as<double>()[n * 7 + i]);
    expected += std::log(z) - logits.as<double>()[n * 7 + t];
  }
  EXPECT_NEAR(result.loss_sum, expected, 1e-12);
  kernels::scale(dlogits, 1.0 / scale);
  expect_gradient("dlogits", logits, dlogits,
                  [&] { return kernels::cross_entropy(View{}, logits, targets, 0).loss_sum; });
  // In place (dlogits aliasing logits) gives the same gradient.
  Tensor inplace = logits.clone();
  kernels::cross_entropy(inplace, inplace, targets, 1.0);
  EXPECT_LT(relative_error(inplace, dlogits), 1e-14);
  EXPECT_THROW(kernels::cross_entropy(View{}, logits, ids_tensor({0, 0, 7, 0, 0}), 1.0), Error);
}

TEST(AdamW, ConstantGradientFollowsClosedForm) {
  // With a constant gradient g the bias-corrected moments are exactly g and g², so every step
  // moves p by −lr·(wd·p + g/(|g| + eps)).
  const kernels::AdamWHyper h{.lr = 0.01, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1};
  std::vector<double> p0 = {0.5, -1.0, 2.0, 0.0}, g = {0.3, -0.02, 1e-3, -4.0};
  Tensor param = Tensor::empty(Shape{4}, DType::f64), grad = Tensor::empty(Shape{4}, DType::f64);
  std::copy(p0.begin(), p0.end(), param.as<double>());
  std::copy(g.begin(), g.end(), grad.as<double>());
  Tensor m = Tensor::zeros(Shape{4}, DType::f64), v = Tensor::zeros(Shape{4}, DType::f64);
  std::vector<double> expected = p0;
  for (int step = 1; step <= 5; ++step) {
    kernels::adamw_step(param, grad, m, v, h, step);
    for (int i = 0; i < 4; ++i) expected[i] -= h.lr * (h.weight_decay * expected[i] + g[i] / (std::abs(g[i]) + h.eps));
  }
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(param.as<double>()[i], expected[i], 1e-12);
}

TEST(Precision, Float32MatchesFloat64) {
  Rng rng(9);
  Tensor q = random_tensor(Shape{2, 7, 4, 8}, rng), k = random_tensor(Shape{2, 7, 2, 8}, rng);
  Tensor v = random_tensor(Shape{2, 7, 2, 8}, rng), w = random_tensor(Shape{8}, rng);
  auto run = [&](DType dtype) {
    Tensor out = Tensor::empty(q.shape(), dtype), lse = Tensor::empty(Shape{2, 4, 7}, dtype);
    kernels::attention_forward(out, lse, q.to(dtype), k.to(dtype), v.to(dtype), 0);
    Tensor y = Tensor::empty(Shape{2 * 7 * 4, 8}, dtype), rstd = Tensor::empty(Shape{2 * 7 * 4}, dtype);
    kernels::rmsnorm_forward(y, rstd, out.reshaped(y.shape()), w.to(dtype), 1e-6);
    return y.to(DType::f64);
  };
  EXPECT_LT(relative_error(run(DType::f32), run(DType::f64)), 1e-6);
  Tensor bf = Tensor::empty(q.shape(), DType::bf16);
  EXPECT_THROW(kernels::attention_forward(bf, bf, bf, bf, bf, 0), Error);  // CPU ops compute in f32/f64
}

}  // namespace
}  // namespace fe
