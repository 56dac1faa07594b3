// tokenizer/hf_unicode.cpp — Unicode predicates, normalization and case mapping over utf8proc.

#include "tokenizer/hf_unicode.h"

#include <utf8proc.h>

#include <array>
#include <cstdlib>
#include <memory>
#include <stdexcept>

#include "tokenizer/utf8.h"

namespace fe::hf {
namespace {

utf8proc_category_t category(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); }

struct ByteLevelAlphabet {
  std::array<std::string, 256> chars;
  std::array<int16_t, 324> bytes;  // code point → byte, -1 where none (the alphabet ends at U+0143)

  ByteLevelAlphabet() {
    bytes.fill(-1);
    int next_extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t c = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next_extra++);
      utf8::append(chars[b], c);
      bytes[c] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

const char* form_name(NormalForm form) {
  switch (form) {
    case NormalForm::nfc:
      return "NFC";
    case NormalForm::nfd:
      return "NFD";
    case NormalForm::nfkc:
      return "NFKC";
    case NormalForm::nfkd:
      return "NFKD";
  }
  return "?";
}

}  // namespace

bool is_numeric(char32_t c) {
  const auto cat = category(c);
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

bool is_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

size_t leading_whitespace_length(std::string_view text) {
  size_t end = 0;
  for (size_t pos = 0; pos < text.size();) {
    if (!is_whitespace(utf8::next(text, pos))) break;
    end = pos;
  }
  return end;
}

size_t trailing_whitespace_begin(std::string_view text) {
  size_t begin = text.size();
  while (begin > 0) {
    size_t start = utf8::previous_start(text, begin);
    if (size_t pos = start; !is_whitespace(utf8::next(text, pos))) break;
    begin = start;
  }
  return begin;
}

std::string normalize(std::string_view text, NormalForm form) {
  if (utf8::is_ascii(text)) return std::string(text);  // every form leaves ASCII as it is
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::nfc:
      options |= UTF8PROC_COMPOSE;
      break;
    case NormalForm::nfd:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case NormalForm::nfkc:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case NormalForm::nfkd:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                   &result, static_cast<utf8proc_option_t>(options));
  const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(result, &std::free);
  if (length < 0) {
    throw std::runtime_error(std::string(form_name(form)) + " normalization of " + std::to_string(text.size()) +
                             " bytes failed (utf8proc: " + utf8proc_errmsg(length) + ")");
  }
  return std::string(reinterpret_cast<const char*>(result), static_cast<size_t>(length));
}

std::string lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const auto byte = static_cast<unsigned char>(text[pos]);
    if (byte < 0x80) {
      out += static_cast<char>(byte >= 'A' && byte <= 'Z' ? byte + ('a' - 'A') : byte);
      ++pos;
      continue;
    }
    const char32_t c = utf8::next(text, pos);
    if (c == 0x130) {  // the one unconditional multi-character lowercase mapping
      out += "i\xCC\x87";
      continue;
    }
    utf8::append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
  }
  return out;
}

const std::string& byte_level_char(unsigned char byte) { return byte_level_alphabet().chars[byte]; }

std::optional<unsigned char> byte_level_byte(char32_t c) {
  const auto& bytes = byte_level_alphabet().bytes;
  if (c >= bytes.size() || bytes[c] < 0) return std::nullopt;
  return static_cast<unsigned char>(bytes[c]);
}

}  // namespace fe::hf
