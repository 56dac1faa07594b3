// tokenizer/tokenizer_config.h — what an HF model directory's tokenizer_config.json says about its
// tokenizer: the special tokens' strings, whether a sequence gets BOS/EOS, the chat template.
// Keys it does not name are ignored (the file carries many that only transformers uses).
// Errors throw std::runtime_error naming the file and the key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace fe {

struct TokenizerConfig {
  // Each is written as a string or as an AddedToken object {"content": ..., ...}; null or absent
  // gives nullopt.
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token;
  std::optional<bool> add_bos_token, add_eos_token;
  // A Jinja template; HF's list form [{"name": ..., "template": ...}] gives the one named "default".
  std::optional<std::string> chat_template;
  // nullopt where absent or "unlimited" (transformers writes int(1e30) for that).
  std::optional<int64_t> model_max_length;

  static TokenizerConfig read(const std::string& file);
};

}  // namespace fe
