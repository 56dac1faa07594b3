// tokenizer/sentencepiece_tokenizer.h — the Tokenizer over a SentencePiece `tokenizer.model`
// (libsentencepiece). Tokenizer::load chooses it; this is its constructor.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace fe {

// Reads `model_file` (a serialized SentencePiece ModelProto); an error names the file.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& model_file);

}  // namespace fe
