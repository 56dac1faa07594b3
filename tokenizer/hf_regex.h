// tokenizer/hf_regex.h — the patterns of tokenizer.json (Split, Replace, the ByteLevel regex) over
// PCRE2 in UTF + UCP mode, so `\p{L}`, `\p{N}` and `\s` mean the Unicode classes as in HF's
// Oniguruma. The patterns real checkpoints ship (GPT-2, GPT-4/Llama 3, Qwen2: alternations,
// `(?i:...)`, lookahead; PCRE2 also takes possessive quantifiers) behave the same in both engines
// once `\s` is read as Oniguruma reads it (the White_Space property; PCRE2's own `\s` also takes
// U+180E); the tests compare them on a multilingual corpus. `\w` is left as PCRE2 reads it
// (letters, numbers, underscore; Oniguruma adds marks), which none of those patterns use.
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
  // Throws std::invalid_argument with PCRE2's message and the offset of the error.
  static Regex pattern(std::string_view regex);
  static Regex literal(std::string_view text);
  // A tokenizer.json pattern object: {"String": text} or {"Regex": pattern}.
  static Regex from_json(const JsonNode& node);

  // Non-overlapping matches from left to right (text must be valid UTF-8). After an empty match
  // the search resumes one character later; an empty match where the previous match ended is
  // skipped.
  std::vector<Match> find_all(std::string_view text) const;

 private:
  struct Compiled;
  Regex(std::string_view source, bool literal);
  std::shared_ptr<const Compiled> compiled_;
};

}  // namespace fe::hf
