// tokenizer/tokenizer_config.h — what an HF model directory says about its tokenizer beside the
// tokenizer file: tokenizer_config.json (the special tokens' strings, whether a sequence gets
// BOS/EOS, clean_up_tokenization_spaces, the chat template) and the chat template files that
// transformers writes next to it. Keys it does not name are ignored (the file carries many that
// only transformers uses). Errors throw std::runtime_error naming the file and the key.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace fe {

struct TokenizerConfig {
  // The tokenizer_config.json read; "" when there was none (every field below is then unset).
  std::string file;
  // Each is written as a string or as an AddedToken object {"content": ..., ...}; null or absent
  // gives nullopt.
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token;
  std::optional<bool> add_bos_token, add_eos_token;
  // Whether transformers' decode applies clean_up_tokenization (" ." → "." and so on) to the
  // text; absent means false, transformers' default.
  bool clean_up_tokenization_spaces = false;
  // A Jinja template; HF's list form [{"name": ..., "template": ...}] gives the one named
  // "default". chat_template_origin says where it came from, for error messages
  // ("DIR/chat_template.jinja", "DIR/tokenizer_config.json: chat_template").
  std::optional<std::string> chat_template;
  std::string chat_template_origin;

  // One tokenizer_config.json.
  static TokenizerConfig read(const std::string& file);
  // What the directory `dir` holds beside a tokenizer file: tokenizer_config.json when present,
  // and the chat template as transformers loads it: DIR/chat_template.jinja (the whole file is the
  // template), else DIR/chat_template.json ({"chat_template": ...}), else tokenizer_config.json's
  // chat_template. A directory with none of them gives an empty config.
  static TokenizerConfig read_directory(const std::string& dir);

  // `from_tokenizer` (what the tokenizer file alone says) with this config applied, as
  // transformers applies it: each token string it names becomes the id `token_to_id` gives it (an
  // error naming this file, the key and `tokenizer_file` when there is none); add_bos_token /
  // add_eos_token replace the flags they state. A flag whose id is -1 ends false.
  SpecialTokens special_tokens(SpecialTokens from_tokenizer,
                               const std::function<std::optional<int32_t>(std::string_view)>& token_to_id,
                               const std::string& tokenizer_file) const;
};

}  // namespace fe
