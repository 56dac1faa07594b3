// tokenizer/jinja_text.h — Python's `str` semantics over UTF-8 `std::string`s, for the Jinja
// interpreter (tokenizer/jinja_*.h).
//
// Chat templates index, strip, split and case-map strings as Python does: by code point, with
// Python's notion of whitespace (`str.isspace`) and printability (what `repr` escapes). Strings stay
// UTF-8 everywhere; operations that index by code point decode to UTF-32 internally. Invalid UTF-8
// bytes decode to U+FFFD (chat templates and JSON never hold them).
//
// Case mapping and character classes follow CPython 3.11, whose Unicode database is 14.0: utf8proc
// (the tokenizer module's one Unicode library) gives the general categories and the one-to-one case
// mappings; small tables generated from Python 3.11's unicodedata (jinja_text.cpp) add what Python
// knows beyond them: the one-to-many mappings (ß → SS, the ligatures, İ → i̇), title case that
// differs from upper case, Other_Uppercase/Other_Lowercase, the numeric types, and the code points
// newer Unicode versions assigned, which Python 3.11 still treats as unassigned. Every code point
// matches Python 3.11 for these functions (tests/chat_template_test.cpp checks all of them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/utf8.h"

namespace fe::jinja::text {

// UTF-8 through tokenizer/utf8.h; invalid bytes decode to U+FFFD.
inline std::u32string decode(std::string_view utf8) { return utf8::decode_lossy(utf8); }
inline std::string encode(std::u32string_view code_points) { return utf8::encode(code_points); }
inline void append_utf8(std::string& out, char32_t code_point) { utf8::append(out, code_point); }
// Number of code points (Python's len()).
int64_t length(std::string_view utf8);

// Character classes as Python's str methods see them (one code point: "x".isupper() and so on).
bool is_space(char32_t c);      // str.isspace, and what `\s` matches in the lexer
bool is_printable(char32_t c);  // str.isprintable: what repr() leaves unescaped
bool is_word(char32_t c);       // what `\w` matches in Python's re: str.isalnum, and '_'
bool is_upper(char32_t c);      // Unicode's Uppercase (Lu and Other_Uppercase)
bool is_lower(char32_t c);      // Unicode's Lowercase (Ll and Other_Lowercase)
bool is_alpha(char32_t c);      // categories Lu Ll Lt Lm Lo
bool is_decimal(char32_t c);    // category Nd
bool is_digit(char32_t c);      // Numeric_Type Decimal or Digit (², ①)
bool is_numeric(char32_t c);    // any Numeric_Type (½, Ⅻ, 三)
bool is_alnum(char32_t c);      // str.isalnum: alpha or numeric

std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string swapcase(std::string_view s);
std::string title(std::string_view s);       // str.title: a letter after a non-cased character is title-cased
std::string capitalize(std::string_view s);  // str.capitalize
bool all_upper(std::string_view s);          // str.isupper
bool all_lower(std::string_view s);          // str.islower

// str.strip/lstrip/rstrip: `chars` absent strips whitespace; present strips any of its code points.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split / str.rsplit: `separator` absent splits on whitespace runs and drops empty parts;
// `max_splits` < 0 means no limit. An empty separator is a ValueError in Python and throws here.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& separator, int64_t max_splits);
std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& separator, int64_t max_splits);
std::vector<std::string> splitlines(std::string_view s, bool keep_ends);
// str.replace (`count` < 0 replaces all; an empty `old` inserts between code points, as Python does).
std::string replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count);
// str.find / rfind / count with Python's optional [start, end) in code points (negative from the end).
int64_t find(std::string_view s, std::string_view sub, std::optional<int64_t> start, std::optional<int64_t> end,
             bool from_right);
int64_t count(std::string_view s, std::string_view sub, std::optional<int64_t> start, std::optional<int64_t> end);
bool starts_with(std::string_view s, std::string_view prefix, std::optional<int64_t> start, std::optional<int64_t> end);
bool ends_with(std::string_view s, std::string_view suffix, std::optional<int64_t> start, std::optional<int64_t> end);
// str.center / ljust / rjust with a one-code-point fill.
std::string pad(std::string_view s, int64_t width, char32_t fill, char align /* '<', '>' or '^' */);

// Python's repr() of a str: single quotes unless the text holds ' and no ", escapes as CPython does.
std::string repr(std::string_view s);
// A JSON string literal as Python's json.dumps writes it (ensure_ascii escapes non-ASCII as \uXXXX).
std::string json_quote(std::string_view s, bool ensure_ascii);
// markupsafe.escape: & < > " ' as HTML entities.
std::string escape_html(std::string_view s);

}  // namespace fe::jinja::text
