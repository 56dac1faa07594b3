// engine/generate.h — text continuation with a KV cache: greedy, temperature and top-p sampling.
#pragma once

#include <span>
#include <vector>

#include "engine/llama_model.h"
#include "engine/rng.h"

namespace fe {

struct SamplingOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;       // 0: greedy (argmax)
  double top_p = 1.0;             // nucleus: sample among the most likely tokens holding top_p mass
  uint64_t seed = 0;
  std::vector<int32_t> stop_ids;  // generation ends at any of these (not included in the output)
  // Ids at or above this are never picked: models often pad their vocabulary beyond the
  // tokenizer's, and those rows mean nothing. 0: no limit.
  int64_t vocab_limit = 0;
};

// Continues a non-empty prompt; returns the new tokens only. Each prompt is decoded as one
// sequence: the prompt in one pass, then one token at a time against the cache. An Error when
// max_new_tokens is not in [0, max_position_embeddings] (the cache is sized for all of them).
std::vector<int32_t> generate(const LlamaModel& model, const LoraAdapter* lora,
                              std::span<const int32_t> prompt, const SamplingOptions& options);

// The next token from logits [V] under the options (argmax at temperature 0, ties to the lowest
// id); rng is only drawn from when sampling.
int32_t pick_token(const View& logits, const SamplingOptions& options, Rng& rng);

}  // namespace fe
