// tokenizer/hf_regex.h — the patterns of tokenizer.json (Split, Replace, the ByteLevel regex) over
// PCRE2 in UTF + UCP mode, so `\p{L}`, `\p{N}` and `\s` mean the Unicode classes as in HF's
// Oniguruma. The patterns real checkpoints ship (GPT-2, GPT-4/Llama 3, Qwen2: alternations,
// `(?i:...)`, lookahead; PCRE2 also takes possessive quantifiers) are read the same way by both
// engines once `\s` is read as Oniguruma reads it (the White_Space property; PCRE2's own `\s` also
// takes U+180E); the tests compare them on a multilingual corpus. `\w` is left as PCRE2 reads it
// (letters, numbers, underscore; Oniguruma adds marks), which none of those patterns use.
//
// Where the engines differ: each knows the Unicode version it was built with. Debian 12's PCRE2
// 10.42 has Unicode 14 tables; the Oniguruma of HF tokenizers 0.23 has newer ones. Characters
// assigned after Unicode 14 (Kawi and Nag Mundari, Unicode 15; Kirat Rai, Unicode 16) are
// unassigned here, so `\p{L}` / `\p{N}` do not match them and text in those scripts splits (and
// where the vocabulary has merges across the split, encodes) differently from HF.
// tests/hf_tokenizer_test.cpp states that limit (HfTokenizerUnicodeVersion) and fails once PCRE2's
// tables cover those scripts.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/hf_json.h"

namespace fe::hf {

struct Match {
  size_t begin, end;  // byte offsets
};

class Regex {
 public:
  // `origin` names where the pattern comes from ("tokenizer: FILE: PATH"): errors while matching
  // (PCRE2's match or depth limits) start with it. Compile errors throw std::invalid_argument with
  // PCRE2's message and the offset.
  static Regex pattern(std::string_view regex, std::string origin);
  static Regex literal(std::string_view text, std::string origin);
  // A tokenizer.json pattern object: {"String": text} or {"Regex": pattern}.
  static Regex from_json(const JsonNode& node);

  // Non-overlapping matches from left to right (text must be valid UTF-8). After an empty match
  // the search resumes one character later; an empty match where the previous match ended is
  // skipped.
  std::vector<Match> find_all(std::string_view text) const;
  // `text` with each match of find_all replaced by `content`.
  std::string replace_all(std::string_view text, std::string_view content) const;
  // Whether the pattern matches at byte `pos` of `text` (anchored there).
  bool matches_at(std::string_view text, size_t pos) const;

 private:
  struct Compiled;
  Regex(std::string_view source, bool literal, std::string origin);
  int match(std::string_view text, size_t start, uint32_t options, void* match_data) const;
  std::shared_ptr<const Compiled> compiled_;
};

// The members of Rust's regex `\w` (Unicode: Alphabetic, marks, decimal digits, connector
// punctuation, the joiners ZWNJ/ZWJ) as the inside of a PCRE2 class: "[" + kWordClassItems + "]".
// HF decides single-word added tokens with `\w`, and the Whitespace pre-tokenizer splits on it.
inline constexpr const char* kWordClassItems = R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control})";
// Whether `c` is a `\w` character (that class, through PCRE2's Unicode tables, so the version limit
// above applies to it too).
bool is_word_character(char32_t c);

// The Unicode version of PCRE2's tables ("14.0.0").
std::string regex_unicode_version();

}  // namespace fe::hf
