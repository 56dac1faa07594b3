#include "engine/evaluate.h"

#include <cctype>
#include <cmath>
#include <numeric>

namespace fe {

std::string normalize_text(std::string_view text, const TextNormalization& o) {
  std::string out;
  for (unsigned char c : text) {
    if (o.remove_punctuation && std::ispunct(c)) continue;
    if (o.collapse_whitespace && std::isspace(c)) {
      if (out.empty() || out.back() != ' ') out += ' ';
      continue;
    }
    out += o.lowercase ? static_cast<char>(std::tolower(c)) : static_cast<char>(c);
  }
  if (!o.strip) return out;
  const size_t first = out.find_first_not_of(" \t\n\r\f\v");
  const size_t last = out.find_last_not_of(" \t\n\r\f\v");
  return first == std::string::npos ? "" : out.substr(first, last - first + 1);
}

namespace {

void add_loss(const LlamaModel& model, const LoraAdapter* lora, const std::vector<Example>& examples,
              const Tokenizer* tokenizer, int64_t batch_size, EvalResult& result) {
  if (batch_size <= 0) throw Error("evaluate: batch_size must be positive");
  const int32_t pad_id = tokenizer ? tokenizer->pad_id() : 0;
  std::vector<int64_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  double loss_sum = 0;
  for (size_t begin = 0; begin < order.size(); begin += batch_size) {
    const size_t end = std::min(order.size(), begin + static_cast<size_t>(batch_size));
    const Batch batch = make_batch(examples, std::span(order).subspan(begin, end - begin), pad_id);
    const LossSum loss = model.loss(batch.input_ids, batch.labels, lora);
    loss_sum += loss.sum;
    result.tokens += loss.tokens;
    result.examples += static_cast<int64_t>(end - begin);
  }
  result.loss = result.tokens ? loss_sum / static_cast<double>(result.tokens) : 0.0;
  result.perplexity = std::exp(result.loss);
}

void add_exact_match(const LlamaModel& model, const LoraAdapter* lora, const std::vector<Example>& examples,
                     const Tokenizer& tokenizer, const EvalOptions& options, std::span<const int32_t> stop_ids,
                     EvalResult& result) {
  SamplingOptions sampling = options.sampling;
  sampling.stop_ids.assign(stop_ids.begin(), stop_ids.end());
  sampling.vocab_limit = tokenizer.vocab_size();
  for (const Example& example : examples) {
    if (example.multiple_choice || example.reference.empty() || example.prompt_length == 0) continue;
    if (options.max_generate_examples > 0 && result.generated_examples >= options.max_generate_examples) break;
    const std::span<const int32_t> prompt(example.input_ids.data(), example.prompt_length);
    const std::string generated = tokenizer.decode(generate(model, lora, prompt, sampling));
    ++result.generated_examples;
    result.exact_matches += normalize_text(generated, options.normalization) ==
                            normalize_text(example.reference, options.normalization);
  }
}

void add_choice(ChoiceAccuracy& tally, bool correct, bool correct_norm) {
  ++tally.questions;
  tally.correct += correct;
  tally.correct_norm += correct_norm;
}

void add_multiple_choice(const LlamaModel& model, const LoraAdapter* lora, const std::vector<Example>& examples,
                         const Tokenizer* tokenizer, const EvalOptions& options, std::span<const int32_t> stop_ids,
                         EvalResult& result) {
  const bool generating = options.generate_answers && tokenizer;
  const AnswerPattern pattern(options.answer_pattern);
  SamplingOptions sampling = options.sampling;
  sampling.stop_ids.assign(stop_ids.begin(), stop_ids.end());
  if (tokenizer) sampling.vocab_limit = tokenizer->vocab_size();
  for (const Example& example : examples) {
    if (!example.multiple_choice) continue;
    const MultipleChoice& question = *example.multiple_choice;
    const ChoiceScores scores = score_choices(model, lora, question);
    const bool correct = scores.best == question.answer, correct_norm = scores.best_norm == question.answer;
    add_choice(result.choices, correct, correct_norm);
    add_choice(result.by_subject[question.subject], correct, correct_norm);
    if (!generating || (options.max_generate_examples > 0 && result.choices.generated >= options.max_generate_examples))
      continue;
    const std::string answer = tokenizer->decode(generate(model, lora, question.generation_prompt, sampling));
    const bool right = pattern.choice_in(answer, question.sequences.size()) == question.answer;
    for (ChoiceAccuracy* tally : {&result.choices, &result.by_subject[question.subject]}) {
      ++tally->generated;
      tally->generated_correct += right;
    }
  }
}

}  // namespace

EvalResult evaluate(const LlamaModel& model, const LoraAdapter* lora, const std::vector<Example>& examples,
                    const Tokenizer* tokenizer, const EvalOptions& options, std::span<const int32_t> stop_ids) {
  EvalResult result;
  add_loss(model, lora, examples, tokenizer, options.batch_size, result);
  add_multiple_choice(model, lora, examples, tokenizer, options, stop_ids, result);
  if (options.exact_match && tokenizer) add_exact_match(model, lora, examples, *tokenizer, options, stop_ids, result);
  return result;
}

}  // namespace fe
