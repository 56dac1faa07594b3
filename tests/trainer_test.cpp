// The trainer: micro-batching invariance, determinism, clipping, schedules, and that it learns.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/trainer.h"
#include "kernels/elementwise.h"
#include "tests/test_util.h"
#include "tests/training_util.h"

namespace fe {
namespace {

using test::relative_error;

LlamaConfig small_config() { return test::tiny_llama({.layers = 2, .vocab = 41, .init = 0.2}); }

using test::random_batch;

LoraAdapter all_projection_lora(const LlamaConfig& c, DType dtype) { return test::lora_on_every_projection(c, dtype); }

std::vector<Batch> split_rows(const Batch& b, int64_t parts) {
  const int64_t rows = b.input_ids.shape()[0] / parts;
  std::vector<Batch> out;
  for (int64_t p = 0; p < parts; ++p)
    out.push_back({b.input_ids.rows(p * rows, (p + 1) * rows), b.labels.rows(p * rows, (p + 1) * rows)});
  return out;
}

TEST(Trainer, GradientAccumulationEqualsOneBigBatch) {
  const LlamaConfig c = small_config();
  const LlamaModel model(LlamaWeights::random(c, 1, DType::f32));
  const Batch batch = random_batch(4, 8, c.vocab_size, 2);
  const OptimizerOptions sgd{.kind = OptimizerKind::sgd, .lr = 0.5};
  LoraAdapter whole = all_projection_lora(c, DType::f32);
  const StepStats big = Trainer(model, whole, sgd).step(std::vector<Batch>{batch});
  for (int64_t parts : {2, 4}) {
    LoraAdapter accumulated = all_projection_lora(c, DType::f32);
    const StepStats small = Trainer(model, accumulated, sgd).step(split_rows(batch, parts));
    EXPECT_EQ(small.tokens, big.tokens);
    EXPECT_NEAR(small.loss, big.loss, 1e-5 * big.loss);
    const auto a = accumulated.named_tensors(), b = whole.named_tensors();
    for (size_t i = 0; i < a.size(); ++i) EXPECT_LT(relative_error(a[i].second, b[i].second), 1e-5) << a[i].first;
  }
  // The step moved the adapter (the comparison above is not between two untouched copies).
  EXPECT_GT(relative_error(whole.named_tensors()[1].second, all_projection_lora(c, DType::f32).named_tensors()[1].second), 1e-3);
}

TEST(Trainer, SameInputsGiveTheSameBits) {
  const LlamaConfig c = small_config();
  const LlamaModel model(LlamaWeights::random(c, 3, DType::f32));
  const OptimizerOptions adamw{.lr = 1e-2, .weight_decay = 0.01, .schedule = LrSchedule::cosine,
                               .warmup_steps = 1, .total_steps = 4, .max_grad_norm = 0.5};
  auto run = [&] {
    LoraAdapter lora = all_projection_lora(c, DType::f32);
    Trainer trainer(model, lora, adamw);
    for (uint64_t s = 0; s < 4; ++s) trainer.step(std::vector<Batch>{random_batch(2, 6, c.vocab_size, 10 + s)});
    return lora;
  };
  const LoraAdapter a = run(), b = run();
  for (size_t i = 0; i < a.named_tensors().size(); ++i)
    ASSERT_EQ(relative_error(a.named_tensors()[i].second, b.named_tensors()[i].second), 0.0);
}

TEST(Trainer, ClippingBoundsTheUpdate) {
  const LlamaConfig c = small_config();
  const LlamaModel model(LlamaWeights::random(c, 4, DType::f64));
  LoraAdapter lora = all_projection_lora(c, DType::f64);
  const LoraAdapter before = lora.converted(DType::f64);
  const double max_norm = 1e-3;
  const StepStats stats = Trainer(model, lora, {.kind = OptimizerKind::sgd, .lr = 1.0, .max_grad_norm = max_norm})
                              .step(std::vector<Batch>{random_batch(2, 6, c.vocab_size, 5)});
  ASSERT_GT(stats.grad_norm, max_norm);
  double moved = 0;  // with SGD at lr 1 the update is the clipped gradient itself
  for (size_t i = 0; i < lora.named_tensors().size(); ++i) {
    Tensor diff = lora.named_tensors()[i].second.clone();
    kernels::axpy(diff, before.named_tensors()[i].second, -1.0);
    moved += kernels::sum_squares(diff);
  }
  EXPECT_NEAR(std::sqrt(moved), max_norm, 1e-12);
}

TEST(Trainer, ScheduleMatchesHfFormulas) {
  OptimizerOptions o{.lr = 1.0, .warmup_steps = 4, .total_steps = 12};
  EXPECT_EQ(learning_rate(o, 0), 0.0);
  EXPECT_EQ(learning_rate(o, 2), 0.5);
  EXPECT_EQ(learning_rate(o, 9), 1.0);
  o.schedule = LrSchedule::linear;
  EXPECT_DOUBLE_EQ(learning_rate(o, 6), 0.75);
  EXPECT_DOUBLE_EQ(learning_rate(o, 12), 0.0);
  o.schedule = LrSchedule::cosine;
  EXPECT_DOUBLE_EQ(learning_rate(o, 8), 0.5);  // half-way through the decay: (1 + cos(π/2))/2
  EXPECT_NEAR(learning_rate(o, 12), 0.0, 1e-16);
  EXPECT_NEAR(learning_rate(o, 5), 0.5 * (1 + std::cos(M_PI / 8)), 1e-15);
}

TEST(Trainer, LoraAndFullParameterTrainingLowerTheLoss) {
  const LlamaConfig c = small_config();
  const Batch batch = random_batch(2, 12, c.vocab_size, 6);
  {
    const LlamaModel model(LlamaWeights::random(c, 7, DType::f32));
    LoraAdapter lora = all_projection_lora(c, DType::f32);
    Trainer trainer(model, lora, {.lr = 1e-2});
    const double first = trainer.step(std::vector<Batch>{batch}).loss;
    double last = first;
    for (int s = 0; s < 30; ++s) last = trainer.step(std::vector<Batch>{batch}).loss;
    EXPECT_LT(last, 0.5 * first);
  }
  {
    LlamaWeights weights = LlamaWeights::random(c, 7, DType::f32);
    const LlamaModel model(weights);
    Trainer trainer(model, weights, {.lr = 1e-2});
    const double first = trainer.step(std::vector<Batch>{batch}).loss;
    double last = first;
    for (int s = 0; s < 30; ++s) last = trainer.step(std::vector<Batch>{batch}).loss;
    EXPECT_LT(last, 0.5 * first);
  }
}

}  // namespace
}  // namespace fe

#include "engine/evaluate.h"

namespace fe {
namespace {

TEST(Evaluate, NormalizationOptions) {
  const std::string text = "  The  Answer:\t42!\n";
  EXPECT_EQ(normalize_text(text, {}), "The Answer: 42!");
  EXPECT_EQ(normalize_text(text, {.lowercase = true, .remove_punctuation = true}), "the answer 42");
  EXPECT_EQ(normalize_text(text, {.strip = false, .collapse_whitespace = false}), text);
  EXPECT_EQ(normalize_text(text, {.strip = false}), " The Answer: 42! ");
}

}  // namespace
}  // namespace fe

namespace fe {
namespace {

TEST(Trainer, ProximalTermAddsMuTimesDistanceToTheAnchor) {
  // With SGD at lr 1 the update is the gradient: compare training with mu against training
  // without it, from the same start; the difference must be exactly −mu·(w − anchor).
  const LlamaConfig c = small_config();
  const LlamaModel model(LlamaWeights::random(c, 9, DType::f64));
  const Batch batch = random_batch(2, 6, c.vocab_size, 10);
  const double mu = 0.3;
  LoraAdapter plain = all_projection_lora(c, DType::f64), proximal = plain.converted(DType::f64);
  const LoraAdapter anchor_adapter = all_projection_lora(c, DType::f64).converted(DType::f64);
  std::vector<Tensor> anchor;
  Rng rng(11);
  for (auto& [name, t] : anchor_adapter.named_tensors()) {
    rng.fill_normal(t, 0.0, 0.1);
    anchor.push_back(t);
  }
  const OptimizerOptions sgd{.kind = OptimizerKind::sgd, .lr = 1.0};
  Trainer(model, plain, sgd).step(std::vector<Batch>{batch});
  Trainer with_mu(model, proximal, sgd);
  const LoraAdapter start = all_projection_lora(c, DType::f64);
  with_mu.set_proximal_term(mu, anchor);
  with_mu.step(std::vector<Batch>{batch});
  for (size_t i = 0; i < anchor.size(); ++i) {
    Tensor expected = plain.named_tensors()[i].second.clone();   // w − g
    kernels::axpy(expected, start.named_tensors()[i].second, -mu);  // − mu·w₀
    kernels::axpy(expected, anchor[i], mu);                          // + mu·anchor
    EXPECT_LT(relative_error(proximal.named_tensors()[i].second, expected), 1e-12);
  }
}

}  // namespace
}  // namespace fe

namespace fe {
namespace {

// One DP-SGD step at SGD lr 1 moves the adapter by −(1/B)·(Σ_b clip(g_b) + noise), where g_b is the
// gradient of sequence b's mean token loss: checked against gradients of each sequence alone.
TEST(Trainer, DpSgdClipsEachSequenceAndAddsCalibratedNoise) {
  const LlamaConfig c = small_config();
  const LlamaModel model(LlamaWeights::random(c, 12, DType::f64));
  const Batch batch = random_batch(4, 8, c.vocab_size, 13);
  const double clip = 0.05;
  OptimizerOptions options{.kind = OptimizerKind::sgd, .lr = 1.0};
  options.dp_sgd = {.clip_norm = clip, .noise_multiplier = 0.0, .seed = 1};

  const LoraAdapter start = all_projection_lora(c, DType::f64);
  LoraAdapter expected = start.converted(DType::f64);
  int clipped = 0;
  for (int64_t b = 0; b < 4; ++b) {
    LoraAdapter g = start.zeros_like();
    const Batch row{batch.input_ids.rows(b, b + 1), batch.labels.rows(b, b + 1)};
    model.forward_backward(row.input_ids, row.labels, &start, &g, 1.0 / count_label_tokens(row.labels));
    double sq = 0;
    for (const auto& [name, t] : g.named_tensors()) sq += kernels::sum_squares(t);
    const double factor = std::min(1.0, clip / std::sqrt(sq));
    clipped += factor < 1;
    for (size_t i = 0; i < g.named_tensors().size(); ++i)
      kernels::axpy(expected.named_tensors()[i].second, g.named_tensors()[i].second, -factor / 4);
  }
  ASSERT_GT(clipped, 0);  // the clip bites, so the check is about clipping

  LoraAdapter noiseless = all_projection_lora(c, DType::f64).converted(DType::f64);
  Trainer(model, noiseless, options).step(std::vector<Batch>{batch});
  for (size_t i = 0; i < noiseless.named_tensors().size(); ++i)
    EXPECT_LT(relative_error(noiseless.named_tensors()[i].second, expected.named_tensors()[i].second), 1e-10);

  // With σ = 2 the update differs from the noiseless one by N(0, (σ·C/B)²) per element.
  options.dp_sgd.noise_multiplier = 2.0;
  LoraAdapter noisy = all_projection_lora(c, DType::f64).converted(DType::f64);
  Trainer(model, noisy, options).step(std::vector<Batch>{batch});
  double sum_sq = 0;
  int64_t count = 0;
  for (size_t i = 0; i < noisy.named_tensors().size(); ++i) {
    Tensor diff = noisy.named_tensors()[i].second.clone();
    kernels::axpy(diff, noiseless.named_tensors()[i].second, -1.0);
    sum_sq += kernels::sum_squares(diff);
    count += diff.numel();
  }
  const double expected_std = 2.0 * clip / 4;
  EXPECT_NEAR(std::sqrt(sum_sq / count), expected_std, 4 * expected_std / std::sqrt(2.0 * count));
}

}  // namespace
}  // namespace fe
