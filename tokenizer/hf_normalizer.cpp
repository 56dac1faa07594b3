// tokenizer/hf_normalizer.cpp — the normalizers of tokenizer.json.

#include "tokenizer/hf_normalizer.h"

#include <utility>
#include <vector>

#include "tokenizer/hf_regex.h"
#include "tokenizer/hf_unicode.h"

namespace fe::hf {
namespace {

constexpr const char* kSupported = "NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence";

class UnicodeForm final : public Normalizer {
 public:
  explicit UnicodeForm(NormalForm form) : form_(form) {}
  void normalize(std::string& text) const override { text = hf::normalize(text, form_); }

 private:
  NormalForm form_;
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
  void normalize(std::string& text) const override {
    const std::vector<Match> matches = pattern_.find_all(text);
    if (matches.empty()) return;
    std::string out;
    size_t copied = 0;
    for (const Match& match : matches) {
      out.append(text, copied, match.begin - copied);
      out += content_;
      copied = match.end;
    }
    out.append(text, copied);
    text = std::move(out);
  }

 private:
  Regex pattern_;
  std::string content_;
};

// Removes leading and/or trailing whitespace (Rust's char::is_whitespace).
class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      for (size_t pos = 0; pos < text.size();) {
        if (!is_whitespace(next_code_point(text, pos))) break;
        begin = pos;
      }
    }
    if (right_) {
      // Walk forward, remembering where the last non-whitespace character ended.
      size_t last_kept_end = begin;
      for (size_t pos = begin; pos < text.size();) {
        if (!is_whitespace(next_code_point(text, pos))) last_kept_end = pos;
      }
      end = last_kept_end;
    }
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

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const JsonNode& node) {
  const std::string type = node.type();
  if (type == "NFC") return std::make_unique<UnicodeForm>(NormalForm::nfc);
  if (type == "NFD") return std::make_unique<UnicodeForm>(NormalForm::nfd);
  if (type == "NFKC") return std::make_unique<UnicodeForm>(NormalForm::nfkc);
  if (type == "NFKD") return std::make_unique<UnicodeForm>(NormalForm::nfkd);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Prepend") return std::make_unique<Prepend>(node.at("prepend").string());
  if (type == "Replace")
    return std::make_unique<Replace>(Regex::from_json(node.at("pattern")), node.at("content").string());
  if (type == "Strip")
    return std::make_unique<Strip>(node.boolean_or("strip_left", true), node.boolean_or("strip_right", true));
  if (type == "Sequence") {
    const JsonNode list = node.at("normalizers");
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(make_normalizer(list.at(i)));
    return std::make_unique<Sequence>(std::move(steps));
  }
  node.unknown_type(kSupported);
}

}  // namespace fe::hf
