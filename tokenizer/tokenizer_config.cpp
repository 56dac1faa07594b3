// tokenizer/tokenizer_config.cpp — reading tokenizer_config.json.

#include "tokenizer/tokenizer_config.h"

#include <cmath>

#include "tokenizer/hf_json.h"

namespace fe {
namespace {

using hf::JsonNode;

std::optional<std::string> token_string(const JsonNode& root, const char* key) {
  const auto node = root.find(key);
  if (!node) return std::nullopt;
  if (node->value().is_string()) return node->string();
  if (node->value().is_object()) return node->at("content").string();
  node->fail("expected a string or an AddedToken object {\"content\": ...}");
}

std::optional<bool> flag(const JsonNode& root, const char* key) {
  const auto node = root.find(key);
  if (!node) return std::nullopt;
  return node->boolean();
}

std::optional<std::string> read_chat_template(const JsonNode& root) {
  const auto node = root.find("chat_template");
  if (!node) return std::nullopt;
  if (node->value().is_string()) return node->string();
  if (!node->value().is_array()) node->fail("expected a string or a list of {\"name\": ..., \"template\": ...}");
  std::string names;
  for (size_t i = 0; i < node->size(); ++i) {
    const JsonNode entry = node->at(i);
    const std::string name = entry.at("name").string();
    if (name == "default") return entry.at("template").string();
    names += (names.empty() ? "" : ", ") + name;
  }
  node->fail("no template named \"default\" (found: " + (names.empty() ? std::string("none") : names) + ")");
}

std::optional<int64_t> max_length(const JsonNode& root) {
  const auto node = root.find("model_max_length");
  if (!node) return std::nullopt;
  const double value = node->number();
  if (value <= 0 || std::floor(value) != value) node->fail("expected a positive integer");
  if (value >= 9.2e18) return std::nullopt;  // transformers' "no limit" (int(1e30))
  return node->value().is_number_integer() ? node->integer() : static_cast<int64_t>(value);
}

}  // namespace

TokenizerConfig TokenizerConfig::read(const std::string& file) {
  const nlohmann::json json = hf::read_json_file(file);
  const JsonNode root(json, file);
  if (!json.is_object()) root.fail("expected a JSON object");
  TokenizerConfig config;
  config.bos_token = token_string(root, "bos_token");
  config.eos_token = token_string(root, "eos_token");
  config.pad_token = token_string(root, "pad_token");
  config.unk_token = token_string(root, "unk_token");
  config.add_bos_token = flag(root, "add_bos_token");
  config.add_eos_token = flag(root, "add_eos_token");
  config.chat_template = read_chat_template(root);
  config.model_max_length = max_length(root);
  return config;
}

}  // namespace fe
