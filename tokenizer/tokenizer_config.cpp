// tokenizer/tokenizer_config.cpp — reading tokenizer_config.json and the chat template files.

#include "tokenizer/tokenizer_config.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "tokenizer/hf_json.h"

namespace fe {
namespace {

namespace fs = std::filesystem;
using hf::JsonNode;

constexpr const char* kConfigFileName = "tokenizer_config.json";
constexpr const char* kTemplateFileName = "chat_template.jinja";
constexpr const char* kTemplateJsonFileName = "chat_template.json";

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

// "chat_template" as tokenizer_config.json and chat_template.json write it.
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

// The root object of a JSON file, with the file it came from.
struct JsonFile {
  std::string file;
  nlohmann::json json;
  explicit JsonFile(std::string path) : file(std::move(path)), json(hf::read_json_file(file)) {
    if (!json.is_object()) root().fail("expected a JSON object");
  }
  JsonNode root() const { return JsonNode(json, file); }
};

std::string read_text_file(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("tokenizer: " + file + ": cannot open for reading");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error("tokenizer: " + file + ": read error");
  return text;
}

bool is_file(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error);
}

}  // namespace

TokenizerConfig TokenizerConfig::read(const std::string& file) {
  const JsonFile json(file);
  const JsonNode root = json.root();
  TokenizerConfig config;
  config.file = file;
  config.bos_token = token_string(root, "bos_token");
  config.eos_token = token_string(root, "eos_token");
  config.pad_token = token_string(root, "pad_token");
  config.unk_token = token_string(root, "unk_token");
  config.add_bos_token = flag(root, "add_bos_token");
  config.add_eos_token = flag(root, "add_eos_token");
  config.clean_up_tokenization_spaces = flag(root, "clean_up_tokenization_spaces").value_or(false);
  config.chat_template = read_chat_template(root);
  if (config.chat_template) config.chat_template_origin = file + ": chat_template";
  return config;
}

TokenizerConfig TokenizerConfig::read_directory(const std::string& dir) {
  const fs::path base(dir);
  TokenizerConfig config;
  if (const fs::path file = base / kConfigFileName; is_file(file)) config = read(file.string());
  if (const fs::path file = base / kTemplateFileName; is_file(file)) {
    config.chat_template = read_text_file(file.string());
    config.chat_template_origin = file.string();
  } else if (const fs::path json_file = base / kTemplateJsonFileName; is_file(json_file)) {
    const JsonFile json(json_file.string());
    const auto chat_template = read_chat_template(json.root());
    if (!chat_template) json.root().fail("no \"chat_template\" (expected {\"chat_template\": \"...\"})");
    config.chat_template = *chat_template;
    config.chat_template_origin = json_file.string() + ": chat_template";
  }
  return config;
}

SpecialTokens TokenizerConfig::special_tokens(
    SpecialTokens from_tokenizer, const std::function<std::optional<int32_t>(std::string_view)>& token_to_id,
    const std::string& tokenizer_file) const {
  const auto id_of = [&](const std::optional<std::string>& token, const char* key, int32_t fallback) {
    if (!token) return fallback;
    const auto id = token_to_id(*token);
    if (!id) {
      throw std::runtime_error("tokenizer: " + file + ": " + key + ": \"" + *token + "\" is not a token of " +
                               tokenizer_file + " (fix the key or use the tokenizer file that belongs with it)");
    }
    return *id;
  };
  SpecialTokens tokens = from_tokenizer;
  tokens.bos_id = id_of(bos_token, "bos_token", tokens.bos_id);
  tokens.eos_id = id_of(eos_token, "eos_token", tokens.eos_id);
  tokens.pad_id = id_of(pad_token, "pad_token", tokens.pad_id);
  tokens.add_bos = add_bos_token.value_or(tokens.add_bos) && tokens.bos_id >= 0;
  tokens.add_eos = add_eos_token.value_or(tokens.add_eos) && tokens.eos_id >= 0;
  return tokens;
}

}  // namespace fe
