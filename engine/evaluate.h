// engine/evaluate.h — how good is a model (with an adapter) on a dataset: mean loss, perplexity,
// and exact-match accuracy of greedy (or sampled) completions against the references.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/dataset.h"
#include "engine/generate.h"

namespace fe {

// Applied to both the generated text and the reference before comparing.
struct TextNormalization {
  bool strip = true;                // trim leading/trailing whitespace
  bool collapse_whitespace = true;  // runs of whitespace become one space
  bool lowercase = false;
  bool remove_punctuation = false;  // ASCII punctuation
};
std::string normalize_text(std::string_view text, const TextNormalization& options);

struct EvalOptions {
  int64_t batch_size = 8;
  bool exact_match = true;          // generate for examples that have a reference
  int64_t max_generate_examples = 0;  // 0: all of them
  SamplingOptions sampling;           // its stop_ids are evaluate()'s
  TextNormalization normalization;
};

struct EvalResult {
  double loss = 0;                  // mean over label tokens
  double perplexity = 0;            // exp(loss)
  int64_t tokens = 0;
  int64_t examples = 0;             // examples whose loss was scored
  int64_t generated_examples = 0;   // examples scored by exact match
  int64_t exact_matches = 0;
  double accuracy() const { return generated_examples ? double(exact_matches) / generated_examples : 0.0; }
};

// tokenizer is needed for exact match (to decode the generated tokens); pass null to skip it.
// stop_ids end each generated answer: the model's (engine/generation_config.h).
EvalResult evaluate(const LlamaModel& model, const LoraAdapter* lora, const std::vector<Example>& examples,
                    const Tokenizer* tokenizer, const EvalOptions& options, std::span<const int32_t> stop_ids);

}  // namespace fe
