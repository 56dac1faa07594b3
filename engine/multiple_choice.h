// engine/multiple_choice.h — scoring a multiple-choice question (laid out by engine/dataset.h) as
// lm-evaluation-harness scores its multiple-choice tasks, and reading the answer letter out of a
// generated answer as FlowerTune's MMLU evaluation does.
//
// Log-likelihood scoring: choice i's score is the sum, over the choice's tokens, of the log-probability
// of each token given every token before it (the prompt and the choice's earlier tokens), from one
// forward pass over prompt + choice. lm-eval's two accuracies follow from the scores:
//   acc       the choice with the highest score is the answer;
//   acc_norm  the choice with the highest score / length is the answer, where length is the number
//             of characters of the choice's text (lm-eval: `completion_len = len(choice)` of the
//             Python string, so Unicode code points, not bytes and not tokens, and without the
//             leading space; for ASCII text code points and bytes are the same).
// Ties go to the first choice, as numpy's argmax decides them.
//
// Generation scoring: the model continues the question's generation prompt (its choices lettered
// A, B, ...); the answer pattern, a PCRE2 regular expression (UTF and Unicode properties on), is
// searched in the generated text, and its first capture group (the whole match when it has none)
// names the choice by its letter, in either case. Text the pattern does not match, or a letter
// beyond the question's choices, counts as a wrong answer. The default pattern takes a letter that
// stands alone as the first word of the answer (" B", "B. Paris", "(c)"). FlowerTune instead keeps
// the first alphanumeric character of the answer, even when it starts a longer word, and generates
// only as many tokens as the answer letter takes; set eval.answer_pattern to "^[^A-Za-z0-9]*([A-Ea-e])"
// and eval.max_new_tokens to 1 for its rule.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/dataset.h"
#include "engine/llama_model.h"

namespace fe {

struct ChoiceScores {
  std::vector<double> log_likelihoods;  // per choice
  int64_t best = 0;                     // acc's pick: the highest log-likelihood
  int64_t best_norm = 0;                // acc_norm's pick: the highest log-likelihood per character
};

// One forward pass per choice, on the model's device; lora may be null (the base model).
ChoiceScores score_choices(const LlamaModel& model, const LoraAdapter* lora, const MultipleChoice& question);

inline constexpr const char* kDefaultAnswerPattern = R"(^\W*([A-Za-z])\b)";

class AnswerPattern {
 public:
  // An Error with PCRE2's message and the offset in the pattern when it does not compile, or when
  // it has more than one capture group (which would name the letter is then unclear).
  explicit AnswerPattern(const std::string& pattern);
  // The index of the choice the first match names, or nullopt (no match, not a letter, or a letter
  // beyond `choices`).
  std::optional<int64_t> choice_in(std::string_view generated, size_t choices) const;

 private:
  struct Compiled;
  std::shared_ptr<const Compiled> compiled_;
};

}  // namespace fe
