// tokenizer/hf_regex.cpp — PCRE2 (8-bit, JIT where available) behind find_all.

#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/hf_regex.h"

#include <pcre2.h>

#include <memory>
#include <new>
#include <stdexcept>

#include "tokenizer/utf8.h"

namespace fe::hf {

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  std::string origin;
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

using MatchData = std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)>;

MatchData match_data_for(const pcre2_code* code) {
  MatchData data(pcre2_match_data_create_from_pattern(code, nullptr), &pcre2_match_data_free);
  if (data == nullptr) throw std::bad_alloc();
  return data;
}

}  // namespace

Regex::Regex(std::string_view source, bool literal, std::string origin) {
  auto compiled = std::make_shared<Compiled>();
  compiled->origin = std::move(origin);
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

Regex Regex::pattern(std::string_view regex, std::string origin) {
  return Regex(with_unicode_spaces(regex), false, std::move(origin));
}
Regex Regex::literal(std::string_view text, std::string origin) { return Regex(text, true, std::move(origin)); }

Regex Regex::from_json(const JsonNode& node) {
  const auto text = node.find("String");
  const auto regex = node.find("Regex");
  if (text.has_value() == regex.has_value()) node.fail("expected {\"String\": ...} or {\"Regex\": ...}");
  const JsonNode& source = text ? *text : *regex;
  try {
    return text ? literal(text->string(), source.where()) : pattern(regex->string(), source.where());
  } catch (const std::invalid_argument& error) {
    source.fail(error.what());
  }
}

// PCRE2's return code for one match attempt from `start`; errors other than "no match" throw.
int Regex::match(std::string_view text, size_t start, uint32_t options, void* match_data) const {
  auto* data = static_cast<pcre2_match_data*>(match_data);
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  // The subject was validated once by the caller; PCRE2 need not re-check it at every start.
  options |= PCRE2_NO_UTF_CHECK;
  int rc = PCRE2_ERROR_JIT_STACKLIMIT;
  // pcre2_jit_match does not take PCRE2_ANCHORED at match time; pcre2_match does (with or without
  // the JIT, as it decides).
  if (compiled_->jit && (options & PCRE2_ANCHORED) == 0)
    rc = pcre2_jit_match(compiled_->code, subject, text.size(), start, options, data, nullptr);
  // The interpreter keeps its backtracking state on the heap: the fallback for the JIT's stack.
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match(compiled_->code, subject, text.size(), start, options, data, nullptr);
  if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
    throw std::runtime_error(compiled_->origin + ": regex match failed on a text of " + std::to_string(text.size()) +
                             " bytes: " + error_message(rc));
  }
  return rc;
}

std::vector<Match> Regex::find_all(std::string_view text) const {
  std::vector<Match> matches;
  const MatchData data = match_data_for(compiled_->code);
  size_t start = 0;
  while (start <= text.size()) {
    if (match(text, start, 0, data.get()) == PCRE2_ERROR_NOMATCH) break;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const Match found{ovector[0], ovector[1]};
    const bool empty = found.begin == found.end;
    if (!empty || matches.empty() || matches.back().end != found.begin) matches.push_back(found);
    if (!empty) {
      start = found.end;
    } else if (found.end < text.size()) {
      start = found.end + utf8::sequence_length(static_cast<unsigned char>(text[found.end]));
    } else {
      break;
    }
  }
  return matches;
}

std::string Regex::replace_all(std::string_view text, std::string_view content) const {
  std::string out;
  size_t copied = 0;
  for (const Match& found : find_all(text)) {
    out.append(text.substr(copied, found.begin - copied));
    out.append(content);
    copied = found.end;
  }
  out.append(text.substr(copied));
  return out;
}

bool Regex::matches_at(std::string_view text, size_t pos) const {
  const MatchData data = match_data_for(compiled_->code);
  return match(text, pos, PCRE2_ANCHORED, data.get()) >= 0;
}

bool is_word_character(char32_t c) {
  static const Regex word_class =
      Regex::pattern(std::string("[") + kWordClassItems + "]", "tokenizer: the regex class \\w");
  std::string text;
  utf8::append(text, c);
  return word_class.matches_at(text, 0);
}

std::string regex_unicode_version() {
  char version[64] = {};
  pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, version);
  return version;
}

}  // namespace fe::hf
