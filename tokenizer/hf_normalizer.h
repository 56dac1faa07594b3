// tokenizer/hf_normalizer.h — tokenizer.json's `normalizer`: rewrites each stretch of text between
// added tokens before it is split into pieces (HF normalizes each stretch on its own, so Prepend
// adds its "▁" once per stretch).
//
// Supported types: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace (String or Regex pattern),
// Strip (whitespace, left/right), Sequence; null means none.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/hf_json.h"

namespace fe::hf {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // `text` is valid UTF-8 and stays so.
  virtual void normalize(std::string& text) const = 0;
};

// The normalizer described by `node` (an object with "type"); unknown types are an error naming
// the JSON path and the supported types.
std::unique_ptr<Normalizer> make_normalizer(const JsonNode& node);

}  // namespace fe::hf
