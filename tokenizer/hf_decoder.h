// tokenizer/hf_decoder.h — tokenizer.json's `decoder`: turns the tokens of ids back into text. Each
// decoder rewrites the list of token strings (HF's decode_chain); the text is their concatenation.
//
// Supported types: ByteLevel (characters back to bytes, invalid UTF-8 as U+FFFD per maximal
// invalid sequence), Metaspace ("▁" → " ", dropped in the first token unless prepend_scheme is
// never), ByteFallback ("<0xAB>" runs back to UTF-8, one U+FFFD per byte of an invalid run), Fuse,
// Strip (content, start, stop), Replace (String or Regex pattern), Sequence. Without a decoder
// (null) HF joins the tokens with spaces.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/hf_json.h"

namespace fe::hf {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

std::unique_ptr<Decoder> make_decoder(const JsonNode& node);

// The text of `tokens` through `decoder` (nullptr: joined with spaces).
std::string decode_tokens(const Decoder* decoder, std::vector<std::string> tokens);

}  // namespace fe::hf
