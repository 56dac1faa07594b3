// tokenizer/hf_post_processor.h — tokenizer.json's `post_processor`, read only for what it adds
// around a single sequence (HF's encode(text, add_special_tokens=True)): the BOS/EOS rules. Ids are
// never post-processed by Tokenizer::encode; callers place BOS/EOS themselves.
//
// Supported types: TemplateProcessing (its "single" template: SpecialToken items before and after
// the Sequence), RobertaProcessing and BertProcessing (cls before, sep after), ByteLevel (adds
// nothing), Sequence; null adds nothing.
#pragma once

#include <cstdint>
#include <vector>

#include "tokenizer/hf_json.h"

namespace fe::hf {

struct SingleSequenceTemplate {
  std::vector<int32_t> before, after;  // ids added before / after the text's ids
};

SingleSequenceTemplate single_sequence_template(const JsonNode& post_processor);

}  // namespace fe::hf
