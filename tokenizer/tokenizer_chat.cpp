// tokenizer/tokenizer_chat.cpp — what a tokenizer takes from its model directory's config (the
// chat template, the special tokens' strings, the decode clean-up flag) and apply_chat_template.

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_config.h"

namespace fe {
void Tokenizer::attach_config(const TokenizerConfig& config) {
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
  chat_template_source_ = config.chat_template;
  chat_template_origin_ = config.chat_template_origin;
  clean_up_tokenization_spaces_ = config.clean_up_tokenization_spaces;
}

bool Tokenizer::has_chat_template() const { return chat_template_source_.has_value(); }

std::string Tokenizer::apply_chat_template(const nlohmann::ordered_json& messages, bool add_generation_prompt) const {
  return apply_chat_template(messages, add_generation_prompt, nlohmann::ordered_json::object());
}

std::string Tokenizer::apply_chat_template(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                           const nlohmann::ordered_json& extra_context) const {
  if (!chat_template_source_) {
    throw std::runtime_error(
        "tokenizer: no chat template (the model directory has no chat_template.jinja, no chat_template.json and no "
        "\"chat_template\" in tokenizer_config.json)");
  }
  if (!extra_context.is_object()) {
    throw std::runtime_error(
        "tokenizer: apply_chat_template: the extra context must be a JSON object of variables, "
        "got " +
        std::string(extra_context.type_name()));
  }
  for (const char* argument : {"messages", "add_generation_prompt"}) {
    if (extra_context.contains(argument)) {
      throw std::runtime_error(std::string("tokenizer: apply_chat_template: \"") + argument +
                               "\" is an argument of its own, not a key of the extra context");
    }
  }
  // A template that does not parse throws here, each time it is applied, naming its origin.
  std::call_once(chat_template_parsed_, [this] {
    chat_template_ = std::make_shared<const ChatTemplate>(*chat_template_source_, chat_template_origin_);
  });
  nlohmann::ordered_json context = {{"messages", messages}, {"add_generation_prompt", add_generation_prompt}};
  for (const auto& [key, value] : special_token_strings_) context[key] = value;
  for (const auto& [key, value] : extra_context.items()) context[key] = value;
  return chat_template_->render(context);
}

}  // namespace fe
