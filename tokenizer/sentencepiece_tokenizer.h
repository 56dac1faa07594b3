// tokenizer/sentencepiece_tokenizer.h — the Tokenizer over a SentencePiece `tokenizer.model`
// (libsentencepiece). Tokenizer::load chooses it; this is its constructor.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace fe {

struct TokenizerConfig;

// Reads `model_file` (a serialized SentencePiece ModelProto); an error names the file. `config`
// (the directory's tokenizer_config.json, empty when there is none) overrides the special tokens
// and BOS/EOS flags it names, as transformers' Llama tokenizers apply it; without it BOS is added
// and EOS is not (Llama 2).
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& model_file, const TokenizerConfig& config);

}  // namespace fe
