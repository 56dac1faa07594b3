// The whole model's gradients against central finite differences in f64, plus the invariances the
// trainer relies on (micro-batching, recomputation, logits chunking) and f32 against f64.
#include <gtest/gtest.h>

#include "engine/llama_model.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using test::expect_gradient;
using test::relative_error;

struct Variant {
  std::string name;
  int64_t kv_heads = 2;
  bool tied = false;
  bool bias = false;
  bool llama3_rope = false;
  bool rslora = false;
  int64_t head_dim = 0;  // 0: hidden/heads
  ModelType model_type = ModelType::llama;
  int64_t sliding_window = 0;
};

std::string variant_name(const ::testing::TestParamInfo<Variant>& info) { return info.param.name; }
void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

LlamaConfig tiny_config(const Variant& v) {
  LlamaConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = v.kv_heads;
  c.head_dim = v.head_dim ? v.head_dim : 4;
  c.vocab_size = 19;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500.0;
  c.tie_word_embeddings = v.tied;
  c.attention_bias = c.mlp_bias = v.bias;
  c.model_type = v.model_type;
  c.sliding_window = v.sliding_window;
  c.initializer_range = 0.3;  // large enough that every layer matters to the loss
  if (v.llama3_rope)
    c.rope_scaling = {RopeScaling::Type::llama3, 4.0, 1.0, 4.0, 16};
  return c;
}

// Random weights with non-trivial norms and biases, so every parameter's gradient is exercised.
LlamaWeights tiny_weights(const LlamaConfig& c, uint64_t seed) {
  LlamaWeights w = LlamaWeights::random(c, seed, DType::f64);
  Rng rng(seed + 1);
  for (auto& [name, t] : w.named_tensors()) {
    if (name.ends_with("norm.weight")) rng.fill_normal(t, 1.0, 0.2);
    if (name.ends_with(".bias")) rng.fill_normal(t, 0.0, 0.2);
  }
  return w;
}

LoraAdapter tiny_lora(const LlamaConfig& c, bool rslora, uint64_t seed) {
  LoraConfig lc;
  lc.rank = 2;
  lc.alpha = 3.0;
  lc.use_rslora = rslora;
  lc.targets.assign(kAllProj.begin(), kAllProj.end());
  LoraAdapter lora = LoraAdapter::init(c, lc, seed, DType::f64);
  Rng rng(seed + 7);
  for (auto& layer : lora.layers)
    for (LoraPair& pair : layer)
      if (pair.defined()) rng.fill_normal(pair.b, 0.0, 0.3);  // PEFT starts B at 0: no grad for A
  return lora;
}

struct Batch {
  Tensor ids, labels;
};

Batch random_batch(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  Batch b{Tensor::empty(Shape{batch, seq}, DType::i32), Tensor::empty(Shape{batch, seq}, DType::i32)};
  for (int64_t i = 0; i < batch * seq; ++i) {
    b.ids.as<int32_t>()[i] = static_cast<int32_t>(rng.next_u64() % vocab);
    b.labels.as<int32_t>()[i] = rng.uniform() < 0.25 ? -100 : b.ids.as<int32_t>()[i];
  }
  return b;
}

class ModelGradients : public ::testing::TestWithParam<Variant> {};

TEST_P(ModelGradients, LoraGradientsMatchFiniteDifferences) {
  const LlamaConfig c = tiny_config(GetParam());
  const LlamaModel model(tiny_weights(c, 11));
  LoraAdapter lora = tiny_lora(c, GetParam().rslora, 12);
  const Batch batch = random_batch(2, 6, c.vocab_size, 13);
  LoraAdapter grads = lora.zeros_like();
  const int64_t tokens = count_label_tokens(batch.labels);
  const LossSum loss = model.forward_backward(batch.ids, batch.labels, &lora, &grads, 1.0 / tokens);
  EXPECT_EQ(loss.tokens, tokens);
  EXPECT_NEAR(loss.mean(), model.loss(batch.ids, batch.labels, &lora).mean(), 1e-13);
  const auto params = lora.named_tensors(), grad_tensors = grads.named_tensors();
  ASSERT_EQ(params.size(), 2u * kNumProj * c.num_hidden_layers);
  for (size_t i = 0; i < params.size(); ++i)
    expect_gradient(params[i].first, params[i].second, grad_tensors[i].second,
                    [&] { return model.loss(batch.ids, batch.labels, &lora).mean(); }, 1e-6);
}

TEST_P(ModelGradients, BaseWeightGradientsMatchFiniteDifferences) {
  const LlamaConfig c = tiny_config(GetParam());
  LlamaWeights weights = tiny_weights(c, 21);
  const LlamaModel model(weights);
  LoraAdapter lora = tiny_lora(c, GetParam().rslora, 22);
  const Batch batch = random_batch(2, 5, c.vocab_size, 23);
  LoraAdapter lora_grads = lora.zeros_like();
  LlamaWeights weight_grads = weights.zeros_like();
  model.forward_backward(batch.ids, batch.labels, &lora, &lora_grads, 1.0 / count_label_tokens(batch.labels), &weight_grads);
  const auto params = weights.named_tensors(), grads = weight_grads.named_tensors();
  for (size_t i = 0; i < params.size(); ++i)
    expect_gradient(params[i].first, params[i].second, grads[i].second,
                    [&] { return model.loss(batch.ids, batch.labels, &lora).mean(); }, 1e-6, /*stride=*/7);
}

INSTANTIATE_TEST_SUITE_P(
    Llama, ModelGradients,
    ::testing::Values(Variant{.name = "gqa"}, Variant{.name = "mha", .kv_heads = 4},
                      Variant{.name = "mqa_tied", .kv_heads = 1, .tied = true},
                      Variant{.name = "bias_llama3_rslora", .bias = true, .llama3_rope = true, .rslora = true},
                      Variant{.name = "wide_heads", .head_dim = 6},
                      Variant{.name = "mistral_window2", .model_type = ModelType::mistral, .sliding_window = 2},
                      Variant{.name = "qwen2_qkv_bias", .kv_heads = 1, .model_type = ModelType::qwen2}),
    variant_name);

TEST(Model, RecomputationGivesIdenticalGradients) {
  const LlamaConfig c = tiny_config({});
  const LlamaWeights weights = tiny_weights(c, 31);
  const LoraAdapter lora = tiny_lora(c, false, 32);
  const Batch batch = random_batch(3, 7, c.vocab_size, 33);
  LoraAdapter keep = lora.zeros_like(), recompute = lora.zeros_like();
  const LossSum a = LlamaModel(weights).forward_backward(batch.ids, batch.labels, &lora, &keep, 0.1);
  const LossSum b = LlamaModel(weights, {.recompute_activations = true}).forward_backward(batch.ids, batch.labels, &lora, &recompute, 0.1);
  EXPECT_EQ(a.sum, b.sum);
  for (size_t i = 0; i < keep.named_tensors().size(); ++i)
    EXPECT_EQ(relative_error(keep.named_tensors()[i].second, recompute.named_tensors()[i].second), 0.0);
}

TEST(Model, MicroBatchesAccumulateToTheFullBatchGradient) {
  const LlamaConfig c = tiny_config({});
  const LlamaModel model(tiny_weights(c, 41));
  const LoraAdapter lora = tiny_lora(c, false, 42);
  const Batch full = random_batch(4, 6, c.vocab_size, 43);
  const double scale = 1.0 / count_label_tokens(full.labels);
  LoraAdapter once = lora.zeros_like(), accumulated = lora.zeros_like();
  const LossSum whole = model.forward_backward(full.ids, full.labels, &lora, &once, scale);
  LossSum parts;
  for (int64_t half = 0; half < 2; ++half) {
    const LossSum part = model.forward_backward(full.ids.rows(2 * half, 2 * half + 2), full.labels.rows(2 * half, 2 * half + 2),
                                                &lora, &accumulated, scale);
    parts.sum += part.sum;
    parts.tokens += part.tokens;
  }
  EXPECT_EQ(whole.tokens, parts.tokens);
  EXPECT_NEAR(whole.mean(), parts.mean(), 1e-13);
  for (size_t i = 0; i < once.named_tensors().size(); ++i)
    EXPECT_LT(relative_error(accumulated.named_tensors()[i].second, once.named_tensors()[i].second), 1e-12);
}

// The GPU keeps fp32 LoRA masters beside a bf16 model: an adapter in another dtype than the
// model's is computed with through a copy in the model's dtype. Here an f32 adapter beside an f64
// model computes exactly what the same values in f64 compute.
TEST(Model, AdapterInAnotherDtypeIsUsedThroughACopy) {
  const LlamaConfig c = tiny_config({});
  const LlamaModel model(tiny_weights(c, 61));
  const LoraAdapter narrow = tiny_lora(c, false, 62).converted(DType::f32);
  const LoraAdapter wide = narrow.converted(DType::f64);
  const Batch batch = random_batch(2, 5, c.vocab_size, 63);
  LoraAdapter narrow_grads = wide.zeros_like(), wide_grads = wide.zeros_like();
  for (bool recompute : {false, true}) {
    const LlamaModel m(tiny_weights(c, 61), {.recompute_activations = recompute});
    EXPECT_EQ(m.forward_backward(batch.ids, batch.labels, &narrow, &narrow_grads, 0.3).sum,
              m.forward_backward(batch.ids, batch.labels, &wide, &wide_grads, 0.3).sum);
  }
  for (size_t i = 0; i < wide_grads.named_tensors().size(); ++i)
    EXPECT_EQ(relative_error(narrow_grads.named_tensors()[i].second, wide_grads.named_tensors()[i].second), 0.0);
  EXPECT_EQ(narrow.dtype(), DType::f32);  // untouched
  EXPECT_EQ(relative_error(model.logits(batch.ids, &narrow), model.logits(batch.ids, &wide)), 0.0);
}

TEST(Model, LossChunkingDoesNotChangeResults) {
  const LlamaConfig c = tiny_config({});
  const LlamaWeights weights = tiny_weights(c, 51);
  const LoraAdapter lora = tiny_lora(c, false, 52);
  const Batch batch = random_batch(2, 7, c.vocab_size, 53);
  LoraAdapter one_chunk = lora.zeros_like(), chunked = lora.zeros_like();
  const LossSum a = LlamaModel(weights).forward_backward(batch.ids, batch.labels, &lora, &one_chunk, 0.5);
  const LossSum b = LlamaModel(weights, {.logits_chunk_rows = 3}).forward_backward(batch.ids, batch.labels, &lora, &chunked, 0.5);
  EXPECT_NEAR(a.sum, b.sum, 1e-12);
  for (size_t i = 0; i < chunked.named_tensors().size(); ++i)
    EXPECT_LT(relative_error(chunked.named_tensors()[i].second, one_chunk.named_tensors()[i].second), 1e-13);
}

TEST(Model, LogitsAgreeWithLoss) {
  const LlamaConfig c = tiny_config({.name = "tied", .tied = true});
  const LlamaModel model(tiny_weights(c, 61));
  const LoraAdapter lora = tiny_lora(c, false, 62);
  const Batch batch = random_batch(2, 5, c.vocab_size, 63);
  const Tensor logits = model.logits(batch.ids, &lora);
  ASSERT_EQ(logits.shape(), (Shape{2, 5, c.vocab_size}));
  double sum = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t + 1 < 5; ++t) {
      const int32_t target = batch.labels.as<int32_t>()[b * 5 + t + 1];
      if (target == -100) continue;
      const double* row = logits.as<double>() + (b * 5 + t) * c.vocab_size;
      double z = 0;
      for (int64_t i = 0; i < c.vocab_size; ++i) z += std::exp(row[i]);
      sum += std::log(z) - row[target];
      ++count;
    }
  const LossSum loss = model.loss(batch.ids, batch.labels, &lora);
  EXPECT_EQ(loss.tokens, count);
  EXPECT_NEAR(loss.sum, sum, 1e-12);
}

TEST(Model, Float32MatchesFloat64) {
  const LlamaConfig c = tiny_config({.name = "bias_llama3", .bias = true, .llama3_rope = true});
  const LlamaWeights w64 = tiny_weights(c, 71);
  const LlamaWeights w32 = w64.converted(DType::f32);
  const LoraAdapter l64 = tiny_lora(c, false, 72);
  const LoraAdapter l32 = l64.converted(DType::f32);
  const Batch batch = random_batch(2, 8, c.vocab_size, 73);
  LoraAdapter g64 = l64.zeros_like(), g32 = l32.zeros_like();
  const LossSum a = LlamaModel(w64).forward_backward(batch.ids, batch.labels, &l64, &g64, 0.1);
  const LossSum b = LlamaModel(w32).forward_backward(batch.ids, batch.labels, &l32, &g32, 0.1);
  EXPECT_NEAR(a.sum, b.sum, 1e-5 * std::abs(a.sum));
  for (size_t i = 0; i < g64.named_tensors().size(); ++i)
    EXPECT_LT(relative_error(g32.named_tensors()[i].second, g64.named_tensors()[i].second), 1e-4)
        << g64.named_tensors()[i].first;
}

TEST(Model, BadInputsAreReportedClearly) {
  const LlamaConfig c = tiny_config({});
  const LlamaModel model(tiny_weights(c, 81));
  Batch batch = random_batch(1, 4, c.vocab_size, 82);
  batch.ids.as<int32_t>()[2] = static_cast<int32_t>(c.vocab_size);
  try {
    model.loss(batch.ids, batch.labels, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the vocabulary"), std::string::npos) << e.what();
  }
  const Tensor wrong = Tensor::zeros(Shape{1, 3}, DType::i32);
  EXPECT_THROW(model.loss(batch.ids, wrong, nullptr), Error);
}

}  // namespace
}  // namespace fe

namespace fe {
namespace {

TEST(Checkpoint, MismatchedConfigOrMissingTensorIsNamed) {
  test::TempDir dir;
  const LlamaConfig c = tiny_config({.name = "ckpt"});
  LlamaWeights::random(c, 1, DType::f32).save(dir.path("m"), DType::bf16);
  LlamaConfig wider = c;
  wider.intermediate_size = 32;
  LlamaWeights::random(wider, 1, DType::f32).save(dir.path("wider"), DType::f32);
  std::filesystem::copy_file(dir.path("wider/config.json"), dir.path("m/config.json"),
                             std::filesystem::copy_options::overwrite_existing);
  try {
    LlamaWeights::load(dir.path("m"), DType::f32);
    FAIL() << "expected a shape error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.gate_proj.weight"), std::string::npos) << e.what();
  }
  LlamaConfig untied = c;
  untied.tie_word_embeddings = false;  // now lm_head.weight is required but absent
  LlamaConfig tied = c;
  tied.tie_word_embeddings = true;
  LlamaWeights::random(tied, 1, DType::f32).save(dir.path("t"), DType::f32);
  LlamaWeights::random(untied, 1, DType::f32).save(dir.path("u"), DType::f32);
  std::filesystem::copy_file(dir.path("u/config.json"), dir.path("t/config.json"),
                             std::filesystem::copy_options::overwrite_existing);
  try {
    LlamaWeights::load(dir.path("t"), DType::f32);
    FAIL() << "expected a missing-tensor error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lm_head.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fe

#include "kernels/elementwise.h"

namespace fe {
namespace {

// DP-SGD's per-example gradient norms (ghost norms, never materialising per-example gradients)
// against the explicit gradient of each sequence alone.
TEST(Model, PerExampleLoraNormsMatchExplicitPerExampleGradients) {
  for (const Variant& v : {Variant{.name = "gqa"}, Variant{.name = "bias_tied", .tied = true, .bias = true}}) {
    const LlamaConfig c = tiny_config(v);
    const LlamaModel model(tiny_weights(c, 91));
    const LoraAdapter lora = tiny_lora(c, false, 92);
    const Batch batch = random_batch(3, 6, c.vocab_size, 93);
    const std::vector<double> weights = {0.5, 1.0, 0.25};
    const std::vector<double> norms = model.per_example_lora_sq_norms(batch.ids, batch.labels, &lora, weights);
    LoraAdapter summed = lora.zeros_like(), together = lora.zeros_like();
    for (int64_t b = 0; b < 3; ++b) {
      LoraAdapter alone = lora.zeros_like();
      model.forward_backward(batch.ids.rows(b, b + 1), batch.labels.rows(b, b + 1), &lora, &alone, weights[b]);
      double explicit_sq = 0;
      for (const auto& [name, g] : alone.named_tensors()) explicit_sq += kernels::sum_squares(g);
      EXPECT_NEAR(norms[b], explicit_sq, 1e-10 * explicit_sq) << v.name << " example " << b;
      for (size_t i = 0; i < alone.named_tensors().size(); ++i)
        kernels::axpy(summed.named_tensors()[i].second, alone.named_tensors()[i].second, 1.0);
    }
    model.forward_backward_per_example(batch.ids, batch.labels, &lora, &together, weights);
    for (size_t i = 0; i < summed.named_tensors().size(); ++i)
      EXPECT_LT(relative_error(together.named_tensors()[i].second, summed.named_tensors()[i].second), 1e-12);
  }
}

}  // namespace
}  // namespace fe
