// tokenizer/hf_normalizer.cpp — the normalizers of tokenizer.json.

#include "tokenizer/hf_normalizer.h"

#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/hf_regex.h"
#include "tokenizer/hf_unicode.h"

namespace fe::hf {
namespace {

constexpr const char* kSupported = "NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence";

class UnicodeForm final : public Normalizer {
 public:
  UnicodeForm(NormalForm form, std::string origin) : form_(form), origin_(std::move(origin)) {}
  void normalize(std::string& text) const override {
    try {
      text = hf::normalize(text, form_);
    } catch (const std::runtime_error& error) {
      throw std::runtime_error(origin_ + ": " + error.what());
    }
  }

 private:
  NormalForm form_;
  std::string origin_;  // "tokenizer: FILE: PATH", for errors
};

class Lowercase final : public Normalizer {
 public:
  void normalize(std::string& text) const override { text = lowercase(text); }
};

// Prepends to non-empty text only.
class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class Replace final : public Normalizer {
 public:
  Replace(Regex pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(std::string& text) const override { text = pattern_.replace_all(text, content_); }

 private:
  Regex pattern_;
  std::string content_;
};

// Removes leading and/or trailing whitespace (Rust's char::is_whitespace).
class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text) const override {
    const size_t begin = left_ ? leading_whitespace_length(text) : 0;
    const size_t end = right_ ? begin + trailing_whitespace_begin(std::string_view(text).substr(begin)) : text.size();
    text = text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void normalize(std::string& text) const override {
    for (const auto& step : steps_) step->normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

std::unique_ptr<Normalizer> make(const JsonNode& node, int depth) {
  check_component_nesting(node, depth);
  const std::string type = node.type();
  if (type == "NFC") return std::make_unique<UnicodeForm>(NormalForm::nfc, node.where());
  if (type == "NFD") return std::make_unique<UnicodeForm>(NormalForm::nfd, node.where());
  if (type == "NFKC") return std::make_unique<UnicodeForm>(NormalForm::nfkc, node.where());
  if (type == "NFKD") return std::make_unique<UnicodeForm>(NormalForm::nfkd, node.where());
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Prepend") return std::make_unique<Prepend>(node.at("prepend").string());
  if (type == "Replace")
    return std::make_unique<Replace>(Regex::from_json(node.at("pattern")), node.at("content").string());
  if (type == "Strip")
    return std::make_unique<Strip>(node.boolean_or("strip_left", true), node.boolean_or("strip_right", true));
  if (type == "Sequence") {
    const JsonNode list = node.at("normalizers");
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(make(list.at(i), depth + 1));
    return std::make_unique<Sequence>(std::move(steps));
  }
  node.unknown_type(kSupported);
}

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const JsonNode& node) { return make(node, 0); }

}  // namespace fe::hf
