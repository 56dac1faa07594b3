// tokenizer/hf_decoder.cpp — the decoders of tokenizer.json.

#include "tokenizer/hf_decoder.h"

#include <optional>
#include <utility>

#include "tokenizer/hf_pre_tokenizer.h"
#include "tokenizer/hf_regex.h"
#include "tokenizer/hf_unicode.h"
#include "tokenizer/utf8.h"

namespace fe::hf {
namespace {

constexpr const char* kSupported = "ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence";

class ByteLevel final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& token : tokens) {
      // A token with a character outside the byte alphabet (an added token) keeps its own bytes.
      std::string token_bytes;
      bool all_mapped = true;
      for (size_t pos = 0; pos < token.size() && all_mapped;) {
        const auto byte = byte_level_byte(utf8::next(token, pos));
        if (byte) {
          token_bytes += static_cast<char>(*byte);
        } else {
          all_mapped = false;
        }
      }
      bytes += all_mapped ? token_bytes : token;
    }
    tokens.assign(1, utf8::lossy(bytes));
  }
};

class Metaspace final : public Decoder {
 public:
  Metaspace(char32_t replacement, bool strip_first) : replacement_(replacement), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& token = tokens[i];
      for (size_t pos = 0; pos < token.size();) {
        const size_t begin = pos;
        if (utf8::next(token, pos) != replacement_) {
          out.append(token, begin, pos - begin);
        } else if (i != 0 || !strip_first_) {
          out += ' ';
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  char32_t replacement_;
  bool strip_first_;  // every replacement in the first token is dropped (HF's rule, not only a leading one)
};

std::optional<int> hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return std::nullopt;
}

// The byte of a "<0xAB>" token, parsed as Rust's u8::from_str_radix(.., 16) reads "AB" (which also
// takes "+A").
std::optional<unsigned char> fallback_byte(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return std::nullopt;
  if (token[3] == '+') {
    const auto low = hex_digit(token[4]);
    return low ? std::optional<unsigned char>(static_cast<unsigned char>(*low)) : std::nullopt;
  }
  const auto high = hex_digit(token[3]), low = hex_digit(token[4]);
  if (!high || !low) return std::nullopt;
  return static_cast<unsigned char>(*high * 16 + *low);
}

class ByteFallback final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string pending;
    const auto flush = [&] {
      if (pending.empty()) return;
      if (!utf8::invalid_offset(pending)) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (std::string& token : tokens) {
      if (const auto byte = fallback_byte(token)) {
        pending += static_cast<char>(*byte);
        continue;
      }
      flush();
      out.push_back(std::move(token));
    }
    flush();
    tokens = std::move(out);
  }
};

class Fuse final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string joined;
    for (const std::string& token : tokens) joined += token;
    tokens.assign(1, std::move(joined));
  }
};

// Drops up to `start` leading and `stop` trailing `content` characters of each token.
class Strip final : public Decoder {
 public:
  Strip(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) {
      std::vector<std::pair<size_t, char32_t>> chars;  // (byte offset, code point)
      for (size_t pos = 0; pos < token.size();) {
        const size_t begin = pos;
        chars.emplace_back(begin, utf8::next(token, pos));
      }
      size_t start_cut = 0;
      while (start_cut < start_ && start_cut < chars.size() && chars[start_cut].second == content_) ++start_cut;
      size_t stop_cut = chars.size();
      for (size_t i = 0; i < stop_ && stop_cut > 0 && chars[stop_cut - 1].second == content_; ++i) --stop_cut;
      // HF panics where the cuts cross (a token made only of `content`); it becomes empty here.
      if (start_cut >= stop_cut) {
        token.clear();
        continue;
      }
      const size_t begin = chars[start_cut].first;
      const size_t end = stop_cut == chars.size() ? token.size() : chars[stop_cut].first;
      token = token.substr(begin, end - begin);
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class Replace final : public Decoder {
 public:
  Replace(Regex pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) token = pattern_.replace_all(token, content_);
  }

 private:
  Regex pattern_;
  std::string content_;
};

class Sequence final : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) step->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

size_t count_of(const JsonNode& node, const char* key) {
  const int64_t value = node.integer_or(key, 0);
  if (value < 0) node.at(key).fail("expected a count >= 0");
  return static_cast<size_t>(value);
}

std::unique_ptr<Decoder> make(const JsonNode& node, int depth) {
  check_component_nesting(node, depth);
  const std::string type = node.type();
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "Metaspace") {
    return std::make_unique<Metaspace>(metaspace_replacement_of(node), prepend_scheme_of(node) != PrependScheme::never);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip")
    return std::make_unique<Strip>(node.at("content").character(), count_of(node, "start"), count_of(node, "stop"));
  if (type == "Replace")
    return std::make_unique<Replace>(Regex::from_json(node.at("pattern")), node.at("content").string());
  if (type == "Sequence") {
    const JsonNode list = node.at("decoders");
    std::vector<std::unique_ptr<Decoder>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(make(list.at(i), depth + 1));
    return std::make_unique<Sequence>(std::move(steps));
  }
  node.unknown_type(kSupported);
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const JsonNode& node) { return make(node, 0); }

std::string decode_tokens(const Decoder* decoder, std::vector<std::string> tokens) {
  std::string text;
  if (decoder == nullptr) {
    for (size_t i = 0; i < tokens.size(); ++i) text += (i == 0 ? "" : " ") + tokens[i];
    return text;
  }
  decoder->decode_chain(tokens);
  for (const std::string& token : tokens) text += token;
  return text;
}

}  // namespace fe::hf
