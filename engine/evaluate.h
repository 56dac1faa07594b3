// engine/evaluate.h — how good is a model (with an adapter) on a dataset: mean loss, perplexity,
// exact-match accuracy of greedy (or sampled) completions against the references, and for
// multiple-choice questions (engine/dataset.h) lm-eval's acc and acc_norm from the choices'
// log-likelihoods and, optionally, the accuracy of a generated answer letter
// (engine/multiple_choice.h), overall and per subject. A multiple-choice question's loss is that of
// its correct choice; it is scored by its choices, never by exact match.
#pragma once

#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/dataset.h"
#include "engine/generate.h"
#include "engine/multiple_choice.h"

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
  // Multiple-choice questions: also generate an answer and read its letter with answer_pattern
  // (a PCRE2 pattern, engine/multiple_choice.h); max_generate_examples bounds these too.
  bool generate_answers = false;
  std::string answer_pattern = kDefaultAnswerPattern;
};

// Multiple-choice accuracy over a set of questions.
struct ChoiceAccuracy {
  int64_t questions = 0;
  int64_t correct = 0;       // acc: the most likely choice is the answer
  int64_t correct_norm = 0;  // acc_norm: the most likely choice per character is the answer
  int64_t generated = 0;     // questions scored by a generated answer letter
  int64_t generated_correct = 0;
  double acc() const { return questions ? double(correct) / questions : 0.0; }
  double acc_norm() const { return questions ? double(correct_norm) / questions : 0.0; }
  double generated_acc() const { return generated ? double(generated_correct) / generated : 0.0; }
};

struct EvalResult {
  double loss = 0;                  // mean over label tokens
  double perplexity = 0;            // exp(loss)
  int64_t tokens = 0;
  int64_t examples = 0;             // examples whose loss was scored
  int64_t generated_examples = 0;   // examples scored by exact match
  int64_t exact_matches = 0;
  double accuracy() const { return generated_examples ? double(exact_matches) / generated_examples : 0.0; }
  ChoiceAccuracy choices;                            // all multiple-choice questions
  std::map<std::string, ChoiceAccuracy> by_subject;  // by their "subject" ("" for those without)
};

// tokenizer is needed for exact match (to decode the generated tokens); pass null to skip it.
// stop_ids end each generated answer: the model's (engine/generation_config.h).
EvalResult evaluate(const LlamaModel& model, const LoraAdapter* lora, const std::vector<Example>& examples,
                    const Tokenizer* tokenizer, const EvalOptions& options, std::span<const int32_t> stop_ids);

}  // namespace fe
