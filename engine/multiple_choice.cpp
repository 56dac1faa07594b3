#include "engine/multiple_choice.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace fe {
namespace {

constexpr int32_t kIgnoreIndex = -100;

int64_t first_max(const std::vector<double>& values) {
  int64_t best = 0;
  for (size_t i = 1; i < values.size(); ++i)
    if (values[i] > values[best]) best = static_cast<int64_t>(i);
  return best;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

ChoiceScores score_choices(const LlamaModel& model, const LoraAdapter* lora, const MultipleChoice& question) {
  ChoiceScores scores;
  std::vector<double> per_char;
  for (size_t i = 0; i < question.sequences.size(); ++i) {
    const std::vector<int32_t>& sequence = question.sequences[i];
    const int64_t length = static_cast<int64_t>(sequence.size());
    Tensor ids = Tensor::empty(Shape{1, length}, DType::i32), labels = Tensor::empty(Shape{1, length}, DType::i32);
    std::copy(sequence.begin(), sequence.end(), ids.as<int32_t>());
    int32_t* label = labels.as<int32_t>();
    for (int64_t t = 0; t < length; ++t) label[t] = t < length - question.choice_tokens[i] ? kIgnoreIndex : sequence[t];
    // The loss is Σ −log p over the labelled tokens, each predicted from the tokens before it.
    const double log_likelihood = -model.loss(ids, labels, lora).sum;
    scores.log_likelihoods.push_back(log_likelihood);
    per_char.push_back(log_likelihood / static_cast<double>(question.choice_chars[i]));
  }
  scores.best = first_max(scores.log_likelihoods);
  scores.best_norm = first_max(per_char);
  return scores;
}

struct AnswerPattern::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

AnswerPattern::AnswerPattern(const std::string& pattern) {
  auto compiled = std::make_shared<Compiled>();
  int error = 0;
  PCRE2_SIZE offset = 0;
  compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                 &error, &offset, nullptr);
  if (!compiled->code)
    throw Error("answer pattern \"" + pattern + "\" does not compile: " + pcre2_message(error) + " at offset " +
                std::to_string(offset));
  uint32_t groups = 0;
  pcre2_pattern_info(compiled->code, PCRE2_INFO_CAPTURECOUNT, &groups);
  if (groups > 1)
    throw Error("answer pattern \"" + pattern + "\" has " + std::to_string(groups) +
                " capture groups: give one, around the letter (or none: the whole match is the letter); "
                "(?:...) groups without capturing");
  compiled_ = std::move(compiled);
}

std::optional<int64_t> AnswerPattern::choice_in(std::string_view generated, size_t choices) const {
  const std::string text = utf8::lossy(generated);
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(compiled_->code, nullptr), &pcre2_match_data_free);
  const int rc =
      pcre2_match(compiled_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, data.get(), nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
  if (rc < 0) throw Error("answer pattern: matching failed: " + pcre2_message(rc));
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
  const int group = rc > 1 ? 1 : 0;  // rc: 1 + the highest group that matched
  if (ovector[2 * group] == PCRE2_UNSET) return std::nullopt;
  const std::string_view letter(text.data() + ovector[2 * group], ovector[2 * group + 1] - ovector[2 * group]);
  if (letter.size() != 1) return std::nullopt;
  const char c = letter[0];
  const int64_t index = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' : -1;
  if (index < 0 || index >= static_cast<int64_t>(choices)) return std::nullopt;
  return index;
}

}  // namespace fe
