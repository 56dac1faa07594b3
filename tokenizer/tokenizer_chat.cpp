// tokenizer/tokenizer_chat.cpp — the chat template a tokenizer carries (HF keeps it in
// tokenizer_config.json, beside tokenizer.json or tokenizer.model) and apply_chat_template.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_config.h"

namespace fe {

void Tokenizer::attach_chat_template(const std::string& file) {
  namespace fs = std::filesystem;
  const fs::path config_file = fs::path(file).parent_path() / "tokenizer_config.json";
  std::error_code error;
  const bool has_config = fs::is_regular_file(config_file, error);
  const TokenizerConfig config = has_config ? TokenizerConfig::read(config_file.string()) : TokenizerConfig{};
  // As transformers' special_tokens_map: the config's strings, else the pieces of the ids in use.
  const auto special = [&](const char* key, const std::optional<std::string>& configured, int32_t id) {
    if (configured)
      special_token_strings_.emplace_back(key, *configured);
    else if (id >= 0)
      special_token_strings_.emplace_back(key, id_to_piece(id));
  };
  special("bos_token", config.bos_token, bos_id());
  special("eos_token", config.eos_token, eos_id());
  special("unk_token", config.unk_token, -1);
  special("pad_token", config.pad_token, pad_id());
  if (config.chat_template)
    chat_template_ =
        std::make_shared<const ChatTemplate>(*config.chat_template, config_file.string() + ": chat_template");
}

std::string Tokenizer::apply_chat_template(const nlohmann::ordered_json& messages, bool add_generation_prompt) const {
  if (!chat_template_)
    throw std::runtime_error(
        "tokenizer: no chat template (tokenizer_config.json beside the tokenizer has no \"chat_template\")");
  nlohmann::ordered_json context = {{"messages", messages}, {"add_generation_prompt", add_generation_prompt}};
  for (const auto& [key, value] : special_token_strings_) context[key] = value;
  return chat_template_->render(context);
}

}  // namespace fe
