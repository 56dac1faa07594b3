// tokenizer/hf_tokenizer.h — the Tokenizer over an HF `tokenizer.json` (BPE models). Tokenizer::load
// chooses it; this is its constructor.
//
// encode: added tokens are cut out of the raw text (hf_added_tokens.h); each stretch between them
// is normalized (hf_normalizer.h), cut at normalized added tokens, split into pieces
// (hf_pre_tokenizer.h) and each piece encoded by the BPE model (hf_bpe.h). The post-processor is
// read only for the BOS/EOS rules (hf_post_processor.h); decode goes through the decoder
// (hf_decoder.h). `truncation` and `padding` are not applied (callers cut and pad sequences);
// padding's pad_id is the PAD id when tokenizer_config.json names none. Component Sequences nest at
// most kMaxComponentNesting (hf_json.h) deep.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace fe {

struct TokenizerConfig;

// Reads `json_file`; `config` (the directory's tokenizer_config.json, empty when there is none)
// overrides the special tokens and BOS/EOS flags it names (TokenizerConfig::special_tokens).
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& json_file, const TokenizerConfig& config);

}  // namespace fe
