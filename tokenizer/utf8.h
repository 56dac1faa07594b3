// tokenizer/utf8.h — UTF-8 encoding and decoding for the tokenizer module, in one place.
//
// Two kinds of input: text already known to be valid UTF-8 (next, previous_start and
// sequence_length assume it and do not check), and arbitrary bytes (invalid_offset, lossy,
// decode_lossy check every sequence). "Valid" is the Unicode definition that Rust's str and
// Python's str.decode use: no overlong forms, no surrogates, nothing above U+10FFFF. Invalid bytes
// become U+FFFD once per maximal invalid subpart (Rust's String::from_utf8_lossy, Python's
// errors="replace").
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace fe::utf8 {

inline constexpr char32_t kReplacement = U'\uFFFD';

// The byte length of the sequence whose first byte is `lead` in valid UTF-8 (1 for ASCII and for
// a byte that cannot start a sequence).
size_t sequence_length(unsigned char lead);

// The code point starting at text[pos] (valid UTF-8, pos < size); advances pos past it.
char32_t next(std::string_view text, size_t& pos);
// Where the character that ends at byte `pos` (0 < pos <= size, valid UTF-8) begins.
size_t previous_start(std::string_view text, size_t pos);

// Appends the UTF-8 of `code_point` (at most U+10FFFF).
void append(std::string& out, char32_t code_point);
std::string encode(std::u32string_view code_points);

// Whether every byte is below 0x80 (ASCII text is its own code points, unchanged by every Unicode
// normal form).
bool is_ascii(std::string_view bytes);

// The byte offset of the first invalid sequence of `bytes`, or nullopt when they are valid UTF-8.
std::optional<size_t> invalid_offset(std::string_view bytes);
// `bytes` as valid UTF-8: each maximal invalid subpart becomes U+FFFD.
std::string lossy(std::string_view bytes);
// The code points of `bytes`, with U+FFFD for each maximal invalid subpart.
std::u32string decode_lossy(std::string_view bytes);

}  // namespace fe::utf8
