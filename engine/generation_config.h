// engine/generation_config.h — when a model's answers end: HF's generation_config.json.
//
// Chat models end a turn with a token of their own (<|eot_id|>, <|im_end|>) that is often not the
// tokenizer's EOS, and list every such id in generation_config.json's eos_token_id (one id or a
// list). Generation and exact-match evaluation stop on any of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/llama_config.h"
#include "tokenizer/tokenizer.h"

namespace fe {

// The ids that end a generated answer, each once: generation_config.json's eos_token_id in
// model_dir, or where the file or key is absent config.json's (`config`, as transformers falls
// back to it), and the tokenizer's EOS (when there is a tokenizer and it has one). A malformed file
// or key is an Error naming the file and the key.
std::vector<int32_t> stop_ids(const std::string& model_dir, const LlamaConfig& config, const Tokenizer* tokenizer);

}  // namespace fe
