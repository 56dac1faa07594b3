// tokenizer/hf_added_tokens.h — tokenizer.json's `added_tokens` (special tokens such as
// `<|im_start|>`, and user-added ones), found in the text before the pipeline runs, as HF's
// AddedVocabulary finds them:
// - tokens with normalized=false are matched in the raw text; the stretches between them are
//   normalized one by one, then tokens with normalized=true are matched in the normalized
//   stretches (their content normalized the same way);
// - at each position the leftmost, then longest token matches, and the search resumes after it
//   even when its flags then reject it;
// - single_word: rejected when a word character (Rust regex's `\w`: is_word_character in
//   hf_regex.h) touches either end;
//   lstrip / rstrip: the whitespace before / after joins the token.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/hf_normalizer.h"

namespace fe::hf {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false, normalized = true, lstrip = false, rstrip = false, single_word = false;
};

// A stretch [begin, end) of bytes: an added token's (id >= 0) or text between tokens (id == -1).
struct TextSpan {
  size_t begin, end;
  int32_t id;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // `normalizer` (may be null) normalizes the content of normalized tokens for matching.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // The raw text cut at tokens with normalized=false.
  std::vector<TextSpan> split_raw(std::string_view text) const { return split(text, raw_); }
  // A normalized stretch cut at tokens with normalized=true.
  std::vector<TextSpan> split_normalized(std::string_view text) const { return split(text, normalized_); }

  // The token of `id` as HF's id_to_token and decode give it: the content, normalized when the
  // token is (so a normalized token's text can differ from its content); nullptr for other ids.
  const std::string* text_of(int32_t id) const;
  std::optional<int32_t> id_of(std::string_view content) const;
  bool is_special(std::string_view content) const;
  int32_t max_id() const { return max_id_; }

 private:
  // Patterns grouped by first byte, longest first within a group.
  struct Matcher {
    struct Pattern {
      std::string text;
      size_t token;  // index into tokens_
    };
    std::vector<std::vector<Pattern>> by_first_byte = std::vector<std::vector<Pattern>>(256);
    bool empty = true;
  };
  std::vector<TextSpan> split(std::string_view text, const Matcher& matcher) const;

  std::vector<AddedToken> tokens_;
  std::vector<std::string> texts_;  // text_of each token
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  Matcher raw_, normalized_;
  int32_t max_id_ = -1;
};

}  // namespace fe::hf
