// Generation: the KV-cache path against full forward passes, and the sampler's distribution.
#include "engine/generate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "tests/test_util.h"

namespace fe {
namespace {

using test::relative_error;

LlamaConfig small_config() {
  // peaked logits (large init), so greedy choices are not near-ties
  return test::tiny_llama({.layers = 2, .vocab = 37, .init = 0.5});
}

TEST(Generate, CachedDecodingMatchesFullForward) {
  const LlamaConfig c = small_config();
  const LlamaModel model(LlamaWeights::random(c, 1, DType::f64));
  LoraConfig lc;
  lc.targets = {Proj::q, Proj::k, Proj::v, Proj::down};
  LoraAdapter lora = LoraAdapter::init(c, lc, 2, DType::f64);
  Rng rng(3);
  for (auto& [name, t] : lora.named_tensors()) rng.fill_normal(t, 0.0, 0.2);

  const std::vector<int32_t> tokens = {1, 5, 9, 30, 2, 17, 4, 4, 11};
  Tensor all = Tensor::empty(Shape{1, 9}, DType::i32);
  std::copy(tokens.begin(), tokens.end(), all.as<int32_t>());
  const Tensor full = model.logits(all, &lora);
  KvCache cache = model.new_kv_cache(9);
  int64_t fed = 0;
  for (int64_t chunk : {3, 1, 1, 4}) {  // a prompt, single tokens, then a chunk again
    const View next{all.as<int32_t>() + fed, DType::i32, Shape{1, chunk}, Device::cpu};
    const Tensor last = model.decode(next, cache, &lora);
    fed += chunk;
    const Tensor expected = full.reshaped(Shape{9, c.vocab_size}).rows(fed - 1, fed).reshaped(Shape{c.vocab_size}).clone();
    EXPECT_LT(relative_error(last, expected), 1e-12) << "after " << fed << " tokens";
  }
  EXPECT_EQ(cache.length, 9);
  EXPECT_THROW(model.decode(View{all.data(), DType::i32, Shape{1, 1}, Device::cpu}, cache, &lora), Error);  // full
}

// Each generated token is the argmax of the whole sequence so far recomputed from scratch (an f64
// model, so ties cannot hide a difference).
void expect_greedy_matches_recomputing(const LlamaModel& model, const std::vector<int32_t>& prompt,
                                       const std::vector<int32_t>& generated) {
  const int64_t vocab = model.config().vocab_size;
  std::vector<int32_t> sequence = prompt;
  for (int32_t token : generated) {
    Tensor ids = Tensor::empty(Shape{1, static_cast<int64_t>(sequence.size())}, DType::i32);
    std::copy(sequence.begin(), sequence.end(), ids.as<int32_t>());
    const Tensor logits = model.logits(ids, nullptr);
    const double* last = logits.as<double>() + (sequence.size() - 1) * vocab;
    EXPECT_EQ(token, std::max_element(last, last + vocab) - last) << "after " << sequence.size() << " tokens";
    sequence.push_back(token);
  }
}

TEST(Generate, GreedyMatchesRecomputingEverything) {
  const LlamaConfig c = small_config();
  const LlamaModel model(LlamaWeights::random(c, 4, DType::f64));
  const std::vector<int32_t> prompt = {1, 7, 3};
  SamplingOptions options;
  options.max_new_tokens = 6;
  const std::vector<int32_t> generated = generate(model, nullptr, prompt, options);
  ASSERT_EQ(generated.size(), 6u);
  expect_greedy_matches_recomputing(model, prompt, generated);
  options.stop_ids = {generated[2]};
  EXPECT_EQ(generate(model, nullptr, prompt, options),
            std::vector<int32_t>(generated.begin(), generated.begin() + 2));
}

// A Mistral model whose window (3) is shorter than the sequence: decoding against the KV cache
// applies the same window as the full forward, chunk by chunk and in greedy generation.
TEST(Generate, SlidingWindowDecodingMatchesFullForward) {
  LlamaConfig c = small_config();
  c.model_type = ModelType::mistral;
  c.sliding_window = 3;
  const LlamaWeights weights = LlamaWeights::random(c, 6, DType::f64);
  const LlamaModel model(weights);
  const std::vector<int32_t> tokens = {1, 5, 9, 30, 2, 17, 4, 4, 11, 23};
  const int64_t n = static_cast<int64_t>(tokens.size());
  Tensor all = Tensor::empty(Shape{1, n}, DType::i32);
  std::copy(tokens.begin(), tokens.end(), all.as<int32_t>());
  const Tensor full = model.logits(all, nullptr);
  LlamaWeights full_attention = weights;
  full_attention.config.sliding_window = 0;
  EXPECT_GT(relative_error(LlamaModel(full_attention).logits(all, nullptr), full), 1e-3);  // the window matters

  KvCache cache = model.new_kv_cache(n);
  int64_t fed = 0;
  for (int64_t chunk : {4, 1, 1, 3, 1}) {
    const View next{all.as<int32_t>() + fed, DType::i32, Shape{1, chunk}, Device::cpu};
    const Tensor last = model.decode(next, cache, nullptr);
    fed += chunk;
    const Tensor expected =
        full.reshaped(Shape{n, c.vocab_size}).rows(fed - 1, fed).reshaped(Shape{c.vocab_size}).clone();
    EXPECT_LT(relative_error(last, expected), 1e-12) << "after " << fed << " tokens";
  }

  const std::vector<int32_t> prompt = {1, 7, 3, 12};
  SamplingOptions options;
  options.max_new_tokens = 8;
  const std::vector<int32_t> generated = generate(model, nullptr, prompt, options);
  ASSERT_EQ(generated.size(), 8u);
  expect_greedy_matches_recomputing(model, prompt, generated);
}

TEST(Generate, SamplingFollowsSoftmaxAndTopP) {
  std::vector<double> z = {2.0, 1.0, 0.5, -1.0, 0.0};
  const View logits{z.data(), DType::f64, Shape{5}, Device::cpu};
  SamplingOptions options;
  options.temperature = 0.7;
  Rng rng(5);
  std::vector<int> counts(5, 0);
  const int draws = 200000;
  for (int i = 0; i < draws; ++i) ++counts[pick_token(logits, options, rng)];
  double total = 0;
  for (double v : z) total += std::exp(v / 0.7);
  for (int i = 0; i < 5; ++i) {
    const double p = std::exp(z[i] / 0.7) / total;
    EXPECT_NEAR(counts[i] / double(draws), p, 4 * std::sqrt(p * (1 - p) / draws)) << "token " << i;
  }
  // top_p = 0.8 keeps tokens 0 and 1 (0.67 + 0.16 ≥ 0.8 of the mass) and renormalises.
  options.top_p = 0.8;
  std::fill(counts.begin(), counts.end(), 0);
  for (int i = 0; i < draws; ++i) ++counts[pick_token(logits, options, rng)];
  EXPECT_EQ(counts[2] + counts[3] + counts[4], 0);
  const double p0 = std::exp(2.0 / 0.7) / (std::exp(2.0 / 0.7) + std::exp(1.0 / 0.7));
  EXPECT_NEAR(counts[0] / double(draws), p0, 4 * std::sqrt(p0 * (1 - p0) / draws));
  options.temperature = 0;
  EXPECT_EQ(pick_token(logits, options, rng), 0);
  // Ids beyond the tokenizer's vocabulary are never picked, greedy or sampled.
  std::vector<double> padded = {0.1, 0.2, 5.0, 9.0};
  const View padded_logits{padded.data(), DType::f64, Shape{4}, Device::cpu};
  options.vocab_limit = 2;
  EXPECT_EQ(pick_token(padded_logits, options, rng), 1);
  options.temperature = 1.0;
  options.top_p = 1.0;
  for (int i = 0; i < 1000; ++i) ASSERT_LT(pick_token(padded_logits, options, rng), 2);
}

}  // namespace
}  // namespace fe
