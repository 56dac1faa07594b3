#include "engine/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/elementwise.h"

namespace fe {
namespace {

// Logits of a GPU model are converted there and then copied to the host.
std::vector<double> logits_as_double(const View& logits) {
  std::vector<double> values(logits.numel());
  const View host{values.data(), DType::f64, logits.shape, Device::cpu};
  if (logits.device == Device::cpu) {
    kernels::convert(host, logits);
  } else {
    const Tensor wide = Tensor::empty(logits.shape, DType::f64, logits.device);
    kernels::convert(wide, logits);
    kernels::copy(host, wide);
  }
  return values;
}

}  // namespace

int32_t pick_token(const View& logits, const SamplingOptions& options, Rng& rng) {
  std::vector<double> z = logits_as_double(logits);
  if (options.vocab_limit > 0 && options.vocab_limit < static_cast<int64_t>(z.size())) z.resize(options.vocab_limit);
  if (options.temperature <= 0) return static_cast<int32_t>(std::max_element(z.begin(), z.end()) - z.begin());

  // softmax(z / T), most likely first, cut where the cumulative mass reaches top_p.
  std::vector<int32_t> order(z.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[a] > z[b]; });
  std::vector<double> probs(z.size());
  double total = 0;
  for (size_t i = 0; i < order.size(); ++i) total += probs[i] = std::exp((z[order[i]] - z[order[0]]) / options.temperature);
  size_t kept = 0;
  double mass = 0;
  while (kept < order.size() && (kept == 0 || mass < options.top_p * total)) mass += probs[kept++];
  double u = rng.uniform() * mass;
  for (size_t i = 0; i < kept; ++i)
    if ((u -= probs[i]) < 0) return order[i];
  return order[kept - 1];  // u landed on the boundary through rounding
}

std::vector<int32_t> generate(const LlamaModel& model, const LoraAdapter* lora, std::span<const int32_t> prompt,
                              const SamplingOptions& options) {
  if (prompt.empty()) throw Error("generate: the prompt is empty (add a BOS token at least)");
  // The KV cache holds prompt + max_new_tokens positions from the start.
  if (const int64_t positions = model.config().max_position_embeddings;
      options.max_new_tokens < 0 || options.max_new_tokens > positions)
    throw Error("generate: max_new_tokens " + std::to_string(options.max_new_tokens) +
                " is out of range: allowed 0 to " + std::to_string(positions) +
                " (the model's max_position_embeddings); lower max_new_tokens");
  KvCache cache = model.new_kv_cache(static_cast<int64_t>(prompt.size()) + options.max_new_tokens);
  Rng rng(options.seed);
  std::vector<int32_t> generated;
  Tensor input = Tensor::empty(Shape{1, static_cast<int64_t>(prompt.size())}, DType::i32);
  std::copy(prompt.begin(), prompt.end(), input.as<int32_t>());
  while (static_cast<int64_t>(generated.size()) < options.max_new_tokens) {
    const int32_t next = pick_token(model.decode(input, cache, lora), options, rng);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), next) != options.stop_ids.end()) break;
    generated.push_back(next);
    input = Tensor::empty(Shape{1, 1}, DType::i32);
    input.as<int32_t>()[0] = next;
  }
  return generated;
}

}  // namespace fe
