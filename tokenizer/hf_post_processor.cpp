// tokenizer/hf_post_processor.cpp — the special tokens a post-processor puts around one sequence.

#include "tokenizer/hf_post_processor.h"

#include <limits>
#include <string>

namespace fe::hf {
namespace {

constexpr const char* kSupported = "TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence";

int32_t id_value(const JsonNode& node) {
  const int64_t id = node.integer();
  if (id < 0 || id > std::numeric_limits<int32_t>::max()) node.fail("token id outside [0, 2^31)");
  return static_cast<int32_t>(id);
}

// The ids of the special token named `name` in TemplateProcessing's "special_tokens".
std::vector<int32_t> special_token_ids(const JsonNode& processor, const JsonNode& item, const std::string& name) {
  const JsonNode table = processor.at("special_tokens");
  if (!table.value().contains(name)) item.fail("special token \"" + name + "\" is not in special_tokens");
  const JsonNode ids = table.at(name).at("ids");
  std::vector<int32_t> out;
  for (size_t i = 0; i < ids.size(); ++i) out.push_back(id_value(ids.at(i)));
  return out;
}

SingleSequenceTemplate from_template(const JsonNode& processor) {
  SingleSequenceTemplate result;
  const JsonNode single = processor.at("single");
  bool after_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const JsonNode item = single.at(i);
    if (const auto special = item.find("SpecialToken")) {
      const std::vector<int32_t> ids = special_token_ids(processor, item, special->at("id").string());
      auto& side = after_sequence ? result.after : result.before;
      side.insert(side.end(), ids.begin(), ids.end());
    } else if (item.find("Sequence")) {
      after_sequence = true;
    } else {
      item.fail("expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
  }
  return result;
}

// RobertaProcessing / BertProcessing: "cls" and "sep" are [token, id] pairs.
SingleSequenceTemplate from_cls_sep(const JsonNode& processor) {
  const JsonNode cls = processor.at("cls"), sep = processor.at("sep");
  if (cls.size() != 2) cls.fail("expected [token, id]");
  if (sep.size() != 2) sep.fail("expected [token, id]");
  return {{id_value(cls.at(size_t{1}))}, {id_value(sep.at(size_t{1}))}};
}

SingleSequenceTemplate from_node(const JsonNode& node, int depth) {
  check_component_nesting(node, depth);
  const std::string type = node.type();
  if (type == "TemplateProcessing") return from_template(node);
  if (type == "RobertaProcessing" || type == "BertProcessing") return from_cls_sep(node);
  if (type == "ByteLevel") return {};
  if (type == "Sequence") {
    // Each processor wraps what the previous one produced.
    SingleSequenceTemplate result;
    const JsonNode list = node.at("processors");
    for (size_t i = 0; i < list.size(); ++i) {
      const SingleSequenceTemplate step = from_node(list.at(i), depth + 1);
      result.before.insert(result.before.begin(), step.before.begin(), step.before.end());
      result.after.insert(result.after.end(), step.after.begin(), step.after.end());
    }
    return result;
  }
  node.unknown_type(kSupported);
}

}  // namespace

SingleSequenceTemplate single_sequence_template(const JsonNode& node) { return from_node(node, 0); }

}  // namespace fe::hf
