// tokenizer/hf_json.h — a value inside a JSON file, carrying the file name and its path from the
// root, so that every error about it reads "tokenizer: FILE: PATH: what" (e.g.
// `pre_tokenizer.pretokenizers[1].type`). Shared by the tokenizer.json pipeline and
// tokenizer_config.json. Errors throw std::runtime_error.
//
// A node keeps its path as a link to its parent's (one small shared step per node), and the text
// is built only when asked for (an error), so a file nested N deep costs O(N) to walk, not O(N²).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace fe::hf {

class JsonNode {
 public:
  // The root of `file`'s JSON. `value` and `file` must outlive the node and every node taken from it.
  JsonNode(const nlohmann::json& value, const std::string& file);

  const nlohmann::json& value() const { return *value_; }
  const std::string& file() const { return *file_; }
  // "pre_tokenizer.pretokenizers[1]"; "" at the root.
  std::string path() const;
  // "tokenizer: FILE: PATH" (or "tokenizer: FILE" at the root): what an error about this value
  // starts with.
  std::string where() const;
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

  // The "type" member of a component object (`normalizer`, a pre-tokenizer, ...).
  std::string type() const;

  [[noreturn]] void fail(const std::string& what) const;
  // For a component whose "type" is none of `supported` (a comma-separated list).
  [[noreturn]] void unknown_type(const std::string& supported) const;

 private:
  // One step of the path: a member key, or an array index when is_index. The destructor unlinks
  // the chain iteratively, so a deep path cannot overflow the stack.
  struct Step {
    Step(std::shared_ptr<const Step> parent_step, std::string member_key, size_t element_index, bool index_step)
        : parent(std::move(parent_step)), key(std::move(member_key)), index(element_index), is_index(index_step) {}
    Step(const Step&) = delete;
    Step& operator=(const Step&) = delete;
    ~Step();

    mutable std::shared_ptr<const Step> parent;
    std::string key;
    size_t index;
    bool is_index;
  };

  JsonNode(const nlohmann::json& value, const std::string& file, std::shared_ptr<const Step> step)
      : value_(&value), file_(&file), step_(std::move(step)) {}
  JsonNode child(const nlohmann::json& value, std::string_view key) const;
  void expect(bool ok, const char* expected) const;

  const nlohmann::json* value_;
  const std::string* file_;
  std::shared_ptr<const Step> step_;  // null at the root
};

// How deep Sequence components (normalizers, pre-tokenizers, decoders, post-processors) may nest.
// Real files nest two levels at most; the limit keeps a hostile file from exhausting the stack.
inline constexpr int kMaxComponentNesting = 64;
// Fails at `node` when `depth` (the number of Sequences around it) exceeds kMaxComponentNesting.
void check_component_nesting(const JsonNode& node, int depth);

// Parses the JSON file `file`; a syntax error names the file and the byte offset.
nlohmann::json read_json_file(const std::string& file);

}  // namespace fe::hf
