// tokenizer/utf8.cpp — UTF-8 sequences: the validity rules of Unicode's Table 3-7.

#include "tokenizer/utf8.h"

#include <algorithm>
#include <utility>

namespace fe::utf8 {
namespace {

// The continuation byte range allowed right after `lead`, and how many continuation bytes follow
// (0 for bytes that cannot start a sequence). Excludes overlongs, surrogates and > U+10FFFF.
struct LeadRule {
  int continuation_bytes;
  unsigned char first_low, first_high;
};

LeadRule lead_rule(unsigned char lead) {
  if (lead >= 0xC2 && lead <= 0xDF) return {1, 0x80, 0xBF};
  if (lead == 0xE0) return {2, 0xA0, 0xBF};
  if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) return {2, 0x80, 0xBF};
  if (lead == 0xED) return {2, 0x80, 0x9F};
  if (lead == 0xF0) return {3, 0x90, 0xBF};
  if (lead >= 0xF1 && lead <= 0xF3) return {3, 0x80, 0xBF};
  if (lead == 0xF4) return {3, 0x80, 0x8F};
  return {0, 0, 0};
}

// The length of the valid prefix of the sequence starting at bytes[pos] (a non-ASCII byte), at
// least 1, and whether that prefix is a whole character.
std::pair<size_t, bool> scan_sequence(std::string_view bytes, size_t pos) {
  const LeadRule rule = lead_rule(static_cast<unsigned char>(bytes[pos]));
  if (rule.continuation_bytes == 0) return {1, false};
  size_t end = pos + 1;
  for (int k = 0; k < rule.continuation_bytes; ++k, ++end) {
    if (end >= bytes.size()) return {end - pos, false};
    const auto c = static_cast<unsigned char>(bytes[end]);
    const unsigned char low = k == 0 ? rule.first_low : 0x80, high = k == 0 ? rule.first_high : 0xBF;
    if (c < low || c > high) return {end - pos, false};
  }
  return {end - pos, true};
}

// Calls on_char(begin, length) for each whole character and on_invalid(begin, length) for each
// maximal invalid subpart, in order.
template <typename OnChar, typename OnInvalid>
void scan(std::string_view bytes, OnChar on_char, OnInvalid on_invalid) {
  for (size_t pos = 0; pos < bytes.size();) {
    if (static_cast<unsigned char>(bytes[pos]) < 0x80) {
      on_char(pos, size_t{1});
      ++pos;
      continue;
    }
    const auto [length, whole] = scan_sequence(bytes, pos);
    if (whole) {
      on_char(pos, length);
    } else {
      on_invalid(pos, length);
    }
    pos += length;
  }
}

}  // namespace

size_t sequence_length(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

char32_t next(std::string_view text, size_t& pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  const size_t length = sequence_length(lead);
  char32_t c = length == 1 ? lead : lead & (0x7F >> length);
  for (size_t k = 1; k < length; ++k) c = (c << 6) | (static_cast<unsigned char>(text[pos + k]) & 0x3F);
  pos += length;
  return c;
}

size_t previous_start(std::string_view text, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return start;
}

void append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::string encode(std::u32string_view code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (const char32_t c : code_points) append(out, c);
  return out;
}

bool is_ascii(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

std::optional<size_t> invalid_offset(std::string_view bytes) {
  for (size_t pos = 0; pos < bytes.size();) {
    if (static_cast<unsigned char>(bytes[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const auto [length, whole] = scan_sequence(bytes, pos);
    if (!whole) return pos;
    pos += length;
  }
  return std::nullopt;
}

std::string lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  scan(
      bytes, [&](size_t begin, size_t length) { out.append(bytes.substr(begin, length)); },
      [&](size_t, size_t) { append(out, kReplacement); });
  return out;
}

std::u32string decode_lossy(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  scan(
      bytes,
      [&](size_t begin, size_t) {
        size_t pos = begin;
        out += next(bytes, pos);
      },
      [&](size_t, size_t) { out += kReplacement; });
  return out;
}

}  // namespace fe::utf8
