// tokenizer/hf_unicode.h — the UTF-8 and Unicode rules the HF `tokenizers` pipeline is written
// against (Rust's `char` predicates, `String::from_utf8_lossy`, the GPT-2 byte↔character map),
// reproduced over utf8proc so that our pieces split and decode where HF's do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fe::hf {

// The byte offset of the first invalid UTF-8 sequence in `text`, or nullopt when it is valid.
std::optional<size_t> invalid_utf8_offset(std::string_view text);

// The code point starting at text[pos] (text must be valid UTF-8); advances pos past it.
char32_t next_code_point(std::string_view text, size_t& pos);
// The byte length of the UTF-8 sequence whose first byte is `lead` (1 for continuation bytes).
size_t utf8_length(unsigned char lead);
void append_utf8(std::string& out, char32_t code_point);

// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
std::string from_utf8_lossy(std::string_view bytes);

// Rust's char::is_numeric: general categories Nd, Nl, No.
bool is_numeric(char32_t c);
// Rust's char::is_whitespace: the White_Space property.
bool is_whitespace(char32_t c);
// A regex `\w` character (Unicode): letters, marks, decimal digits, letter numbers, connector
// punctuation and the joiners ZWJ/ZWNJ. HF decides single-word added tokens with it.
bool is_word_character(char32_t c);

enum class NormalForm { nfc, nfd, nfkc, nfkd };
// Unicode normalization of valid UTF-8.
std::string normalize(std::string_view text, NormalForm form);
// Rust's char::to_lowercase applied to each character (full mappings, no context: U+0130 becomes
// "i̇", a final sigma stays σ).
std::string lowercase(std::string_view text);

// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other bytes for
// U+0100 onward in byte order, so every byte string is a string of visible characters.
const std::string& byte_level_char(unsigned char byte);  // as UTF-8
// The byte a character of that alphabet stands for, nullopt for other characters.
std::optional<unsigned char> byte_level_byte(char32_t c);

}  // namespace fe::hf
