// tokenizer/hf_json.cpp — path-carrying access to a parsed JSON file.

#include "tokenizer/hf_json.h"

#include <fstream>
#include <iterator>
#include <stdexcept>
#include <utility>
#include <vector>

#include "tokenizer/utf8.h"

namespace fe::hf {
namespace {

const char* kind_of(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::object:
      return "an object";
    case nlohmann::json::value_t::array:
      return "an array";
    case nlohmann::json::value_t::string:
      return "a string";
    case nlohmann::json::value_t::boolean:
      return "a boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return "an integer";
    case nlohmann::json::value_t::number_float:
      return "a number";
    default:
      return "binary data";
  }
}

}  // namespace

JsonNode::Step::~Step() {
  std::shared_ptr<const Step> next = std::move(parent);
  while (next && next.use_count() == 1) next = std::move(next->parent);
}

JsonNode::JsonNode(const nlohmann::json& value, const std::string& file) : value_(&value), file_(&file) {}

std::string JsonNode::path() const {
  std::vector<const Step*> steps;
  for (const Step* step = step_.get(); step != nullptr; step = step->parent.get()) steps.push_back(step);
  std::string out;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if ((*it)->is_index) {
      out += "[" + std::to_string((*it)->index) + "]";
    } else {
      out += (out.empty() ? "" : ".") + (*it)->key;
    }
  }
  return out;
}

std::string JsonNode::where() const {
  const std::string at = path();
  return "tokenizer: " + *file_ + (at.empty() ? "" : ": " + at);
}

void JsonNode::fail(const std::string& what) const { throw std::runtime_error(where() + ": " + what); }

void JsonNode::expect(bool ok, const char* expected) const {
  if (!ok) fail(std::string("expected ") + expected + ", found " + kind_of(*value_));
}

JsonNode JsonNode::child(const nlohmann::json& value, std::string_view key) const {
  return JsonNode(value, *file_, std::make_shared<const Step>(step_, std::string(key), 0, false));
}

JsonNode JsonNode::at(std::string_view key) const {
  expect(value_->is_object(), "an object");
  const auto it = value_->find(key);
  if (it == value_->end()) child(*value_, key).fail("missing");
  return child(*it, key);
}

std::optional<JsonNode> JsonNode::find(std::string_view key) const {
  expect(value_->is_object(), "an object");
  const auto it = value_->find(key);
  if (it == value_->end() || it->is_null()) return std::nullopt;
  return child(*it, key);
}

JsonNode JsonNode::at(size_t index) const {
  expect(value_->is_array(), "an array");
  if (index >= value_->size()) fail("no element " + std::to_string(index));
  return JsonNode((*value_)[index], *file_, std::make_shared<const Step>(step_, std::string(), index, true));
}

size_t JsonNode::size() const {
  expect(value_->is_array(), "an array");
  return value_->size();
}

std::string JsonNode::string() const {
  expect(value_->is_string(), "a string");
  return value_->get<std::string>();
}

char32_t JsonNode::character() const {
  const std::string text = string();
  size_t pos = 0;
  const char32_t c = text.empty() ? 0 : utf8::next(text, pos);
  if (text.empty() || pos != text.size()) fail("expected a single character, found \"" + text + "\"");
  return c;
}

bool JsonNode::boolean() const {
  expect(value_->is_boolean(), "true or false");
  return value_->get<bool>();
}

int64_t JsonNode::integer() const {
  expect(value_->is_number_integer(), "an integer");
  if (value_->is_number_unsigned() && value_->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    fail("integer out of range");
  return value_->get<int64_t>();
}

double JsonNode::number() const {
  expect(value_->is_number(), "a number");
  return value_->get<double>();
}

bool JsonNode::boolean_or(std::string_view key, bool fallback) const {
  const auto member = find(key);
  return member ? member->boolean() : fallback;
}

int64_t JsonNode::integer_or(std::string_view key, int64_t fallback) const {
  const auto member = find(key);
  return member ? member->integer() : fallback;
}

std::string JsonNode::type() const { return at("type").string(); }

void JsonNode::unknown_type(const std::string& supported) const {
  const JsonNode type_node = at("type");
  type_node.fail("unknown type \"" + type_node.string() + "\" (supported: " + supported + ")");
}

void check_component_nesting(const JsonNode& node, int depth) {
  if (depth > kMaxComponentNesting) {
    node.fail("components nested more than " + std::to_string(kMaxComponentNesting) +
              " Sequences deep (real tokenizers nest one or two; is the file corrupt?)");
  }
}

nlohmann::json read_json_file(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("tokenizer: " + file + ": cannot open for reading");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error("tokenizer: " + file + ": read error");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& error) {
    throw std::runtime_error("tokenizer: " + file + ": not valid JSON (" + error.what() + ")");
  }
}

}  // namespace fe::hf
