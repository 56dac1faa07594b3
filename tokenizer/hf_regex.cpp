// tokenizer/hf_regex.cpp — PCRE2 (8-bit, JIT where available) behind find_all.

#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/hf_regex.h"

#include <pcre2.h>

#include <memory>
#include <new>
#include <stdexcept>

#include "tokenizer/hf_unicode.h"

namespace fe::hf {

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

namespace {

std::string error_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

// `\s` / `\S` spelled as the White_Space property, inside classes too: Oniguruma's `\s` (HF's
// engine) is exactly White_Space, while PCRE2's also takes U+180E. Text between \Q and \E is
// literal and left alone.
std::string with_unicode_spaces(std::string_view regex) {
  std::string out;
  out.reserve(regex.size() + 16);
  for (size_t i = 0; i < regex.size(); ++i) {
    if (regex[i] != '\\' || i + 1 == regex.size()) {
      out += regex[i];
      continue;
    }
    const char next = regex[++i];
    if (next == 's') {
      out += "\\p{White_Space}";
    } else if (next == 'S') {
      out += "\\P{White_Space}";
    } else if (next == 'Q') {
      const size_t end = regex.find("\\E", i + 1);
      const size_t stop = end == std::string_view::npos ? regex.size() : end + 2;
      out.append(regex.substr(i - 1, stop - (i - 1)));
      i = stop - 1;
    } else {
      out += '\\';
      out += next;
    }
  }
  return out;
}

}  // namespace

Regex::Regex(std::string_view source, bool literal) {
  auto compiled = std::make_shared<Compiled>();
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  const uint32_t options = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(), options, &error,
                                 &error_offset, nullptr);
  if (compiled->code == nullptr) {
    throw std::invalid_argument("invalid regex at offset " + std::to_string(error_offset) + ": " +
                                error_message(error));
  }
  compiled->jit = pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE) == 0;
  compiled_ = std::move(compiled);
}

Regex Regex::pattern(std::string_view regex) { return Regex(with_unicode_spaces(regex), false); }
Regex Regex::literal(std::string_view text) { return Regex(text, true); }

Regex Regex::from_json(const JsonNode& node) {
  const auto text = node.find("String");
  const auto regex = node.find("Regex");
  if (text.has_value() == regex.has_value()) node.fail("expected {\"String\": ...} or {\"Regex\": ...}");
  try {
    return text ? literal(text->string()) : pattern(regex->string());
  } catch (const std::invalid_argument& error) {
    (text ? *text : *regex).fail(error.what());
  }
}

std::vector<Match> Regex::find_all(std::string_view text) const {
  std::vector<Match> matches;
  const std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> owned(
      pcre2_match_data_create_from_pattern(compiled_->code, nullptr), &pcre2_match_data_free);
  pcre2_match_data* data = owned.get();
  if (data == nullptr) throw std::bad_alloc();
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    // The subject was validated once by the caller; PCRE2 need not re-check it at every start.
    int rc = PCRE2_ERROR_JIT_STACKLIMIT;
    if (compiled_->jit)
      rc = pcre2_jit_match(compiled_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, data, nullptr);
    // The interpreter keeps its backtracking state on the heap: the fallback for the JIT's stack.
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(compiled_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw std::runtime_error("regex match failed: " + error_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const Match match{ovector[0], ovector[1]};
    const bool empty = match.begin == match.end;
    if (!empty || matches.empty() || matches.back().end != match.begin) matches.push_back(match);
    if (!empty) {
      start = match.end;
    } else if (match.end < text.size()) {
      start = match.end + utf8_length(static_cast<unsigned char>(text[match.end]));
    } else {
      break;
    }
  }
  return matches;
}

}  // namespace fe::hf
