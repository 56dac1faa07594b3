// tokenizer/hf_added_tokens.cpp — finding added tokens in text.

#include "tokenizer/hf_added_tokens.h"

#include <algorithm>
#include <utility>

#include "tokenizer/hf_regex.h"
#include "tokenizer/hf_unicode.h"
#include "tokenizer/utf8.h"

namespace fe::hf {
namespace {

// Whether the character that ends text[0, end) / starts text[begin, ...) is a `\w` character (HF
// rejects a single-word token that one touches).
bool word_character_before(std::string_view text, size_t end) {
  if (end == 0) return false;
  size_t pos = utf8::previous_start(text, end);
  return is_word_character(utf8::next(text, pos));
}

bool word_character_after(std::string_view text, size_t begin) {
  if (begin == text.size()) return false;
  return is_word_character(utf8::next(text, begin));
}

}  // namespace

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& token = tokens_[i];
    by_id_[token.id] = i;
    by_content_[token.content] = i;
    max_id_ = std::max(max_id_, token.id);
    std::string pattern = token.content;
    if (token.normalized && normalizer != nullptr) normalizer->normalize(pattern);
    texts_.push_back(pattern);
    if (token.content.empty() || pattern.empty()) continue;  // HF ignores empty tokens
    Matcher& matcher = token.normalized ? normalized_ : raw_;
    matcher.by_first_byte[static_cast<unsigned char>(pattern[0])].push_back({std::move(pattern), i});
    matcher.empty = false;
  }
  for (Matcher* matcher : {&raw_, &normalized_}) {
    for (auto& group : matcher->by_first_byte) {
      std::stable_sort(group.begin(), group.end(), [](const Matcher::Pattern& a, const Matcher::Pattern& b) {
        return a.text.size() > b.text.size();
      });
    }
  }
}

const std::string* AddedVocabulary::text_of(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &texts_[it->second];
}

std::optional<int32_t> AddedVocabulary::id_of(std::string_view content) const {
  const auto it = by_content_.find(std::string(content));
  if (it == by_content_.end()) return std::nullopt;
  return tokens_[it->second].id;
}

bool AddedVocabulary::is_special(std::string_view content) const {
  const auto it = by_content_.find(std::string(content));
  return it != by_content_.end() && tokens_[it->second].special;
}

std::vector<TextSpan> AddedVocabulary::split(std::string_view text, const Matcher& matcher) const {
  if (matcher.empty || text.empty()) return {{0, text.size(), -1}};
  std::vector<TextSpan> spans;
  size_t plain_begin = 0;  // where the text not yet covered by a span begins
  for (size_t pos = 0; pos < text.size();) {
    const Matcher::Pattern* found = nullptr;
    for (const auto& pattern : matcher.by_first_byte[static_cast<unsigned char>(text[pos])]) {
      if (text.compare(pos, pattern.text.size(), pattern.text) == 0) {
        found = &pattern;
        break;
      }
    }
    if (found == nullptr) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[found->token];
    size_t begin = pos, end = pos + found->text.size();
    pos = end;  // the search resumes after the match even if the token's flags reject it
    if (token.single_word && (word_character_before(text, begin) || word_character_after(text, end))) continue;
    if (token.lstrip) begin = std::max(trailing_whitespace_begin(text.substr(0, begin)), plain_begin);
    if (token.rstrip) end += leading_whitespace_length(text.substr(end));
    if (plain_begin < begin) spans.push_back({plain_begin, begin, -1});
    spans.push_back({begin, end, token.id});
    plain_begin = end;
    pos = std::max(pos, end);
  }
  if (plain_begin < text.size()) spans.push_back({plain_begin, text.size(), -1});
  return spans;
}

}  // namespace fe::hf
