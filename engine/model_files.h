// engine/model_files.h — what a checkpoint needs beside its weights to be used as its base was.
//
// A merged model, or the model a full-parameter run saves, must encode text, lay out chats and
// stop generating as the base did: its tokenizer file (tokenizer.json or tokenizer.model), the
// tokenizer_config.json and special_tokens_map.json beside it, and the base's
// generation_config.json all travel with the weights.
#pragma once

#include <string>

namespace fe {

// Copies into to_dir (which must exist) whichever of those files exist. tokenizer_path is what
// Tokenizer::load takes (a file, or a directory holding one); empty: no tokenizer.
void copy_model_companion_files(const std::string& model_dir, const std::string& tokenizer_path,
                                const std::string& to_dir);

}  // namespace fe
