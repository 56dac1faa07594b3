// tokenizer/hf_unicode.h — the Unicode rules the HF `tokenizers` pipeline is written against
// (Rust's `char` predicates and case mapping, the GPT-2 byte↔character map), reproduced over
// utf8proc so that our pieces split and decode where HF's do. UTF-8 itself is tokenizer/utf8.h;
// regex `\w` is is_word_character in hf_regex.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fe::hf {

// Rust's char::is_numeric: general categories Nd, Nl, No.
bool is_numeric(char32_t c);
// Rust's char::is_whitespace: the White_Space property.
bool is_whitespace(char32_t c);

// The byte length of the whitespace (is_whitespace) that starts `text` (valid UTF-8).
size_t leading_whitespace_length(std::string_view text);
// Where the whitespace that ends `text` (valid UTF-8) begins; text.size() when none does.
size_t trailing_whitespace_begin(std::string_view text);

enum class NormalForm { nfc, nfd, nfkc, nfkd };
// Unicode normalization of valid UTF-8 (utf8proc's tables). Throws std::runtime_error naming the
// form and utf8proc's reason (only on memory exhaustion once the text is valid).
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
