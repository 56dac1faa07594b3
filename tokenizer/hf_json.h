// tokenizer/hf_json.h — a value inside a JSON file, carrying the file name and its path from the
// root, so that every error about it reads "tokenizer: FILE: PATH: what" (e.g.
// `pre_tokenizer.pretokenizers[1].type`). Shared by the tokenizer.json pipeline and
// tokenizer_config.json. Errors throw std::runtime_error.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace fe::hf {

class JsonNode {
 public:
  // `value` and `file` must outlive the node and every node taken from it.
  JsonNode(const nlohmann::json& value, const std::string& file, std::string path = "");

  const nlohmann::json& value() const { return *value_; }
  const std::string& file() const { return *file_; }
  const std::string& path() const { return path_; }
  bool is_null() const { return value_->is_null(); }

  // A member that must be present (null counts as present; the typed getters reject it).
  JsonNode at(std::string_view key) const;
  // A member that may be absent; absent and null both give nullopt (HF writes null for "none").
  std::optional<JsonNode> find(std::string_view key) const;
  // Element `index` of an array.
  JsonNode at(size_t index) const;
  // The number of elements of an array (an error for anything else).
  size_t size() const;

  std::string string() const;
  // A string of exactly one character (Metaspace's replacement, Strip's content).
  char32_t character() const;
  bool boolean() const;
  int64_t integer() const;
  double number() const;

  // Optional members with the value HF assumes when they are absent or null.
  bool boolean_or(std::string_view key, bool fallback) const;
  int64_t integer_or(std::string_view key, int64_t fallback) const;
  std::string string_or(std::string_view key, const std::string& fallback) const;

  // The "type" member of a component object (`normalizer`, a pre-tokenizer, ...).
  std::string type() const;

  [[noreturn]] void fail(const std::string& what) const;
  // For a component whose "type" is none of `supported` (a comma-separated list).
  [[noreturn]] void unknown_type(const std::string& supported) const;

 private:
  void expect(bool ok, const char* expected) const;

  const nlohmann::json* value_;
  const std::string* file_;
  std::string path_;
};

// Parses the JSON file `file`; a syntax error names the file and the byte offset.
nlohmann::json read_json_file(const std::string& file);

}  // namespace fe::hf
