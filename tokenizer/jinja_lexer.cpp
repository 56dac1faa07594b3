// tokenizer/jinja_lexer.cpp — jinja2's lexer rules under trim_blocks and lstrip_blocks (see
// jinja_lexer.h). Each branch below mirrors one of jinja2's regular expressions; the comments give
// the expression it stands for.
#include "tokenizer/jinja_lexer.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "tokenizer/jinja_text.h"

namespace fe::jinja {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

struct Operator {
  std::string_view symbol;
  TokenType type;
};

// Longest first, as jinja2's operator regex.
constexpr Operator kOperators[] = {
    {"//", TokenType::floordiv}, {"**", TokenType::pow},      {"==", TokenType::eq},    {"!=", TokenType::ne},
    {">=", TokenType::gteq},     {"<=", TokenType::lteq},     {"+", TokenType::add},    {"-", TokenType::sub},
    {"/", TokenType::div},       {"*", TokenType::mul},       {"%", TokenType::mod},    {"~", TokenType::tilde},
    {"[", TokenType::lbracket},  {"]", TokenType::rbracket},  {"(", TokenType::lparen}, {")", TokenType::rparen},
    {"{", TokenType::lbrace},    {"}", TokenType::rbrace},    {">", TokenType::gt},     {"<", TokenType::lt},
    {"=", TokenType::assign},    {".", TokenType::dot},       {":", TokenType::colon},  {"|", TokenType::pipe},
    {",", TokenType::comma},     {";", TokenType::semicolon},
};

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      switch (state_) {
        case State::root:
          lex_root();
          break;
        case State::block:
        case State::variable:
          lex_tag();
          break;
      }
    }
    emit(TokenType::eof, "", src_.size());
    return std::move(tokens_);
  }

 private:
  enum class State { root, block, variable };

  // The column counts code points from the line's start. Tokens come in source order, so the count
  // continues from the previous position on the same line: counting from the start each time would
  // take time quadratic in the length of a one-line template.
  SourcePos position(size_t offset) const {
    size_t line = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - line_starts_.begin();
    const size_t start = line_starts_[line - 1];
    if (counted_.offset < start || counted_.offset > offset) counted_ = {start, 1};
    counted_.column += text::length(std::string_view(src_.data() + counted_.offset, offset - counted_.offset));
    counted_.offset = offset;
    return {static_cast<int>(line), static_cast<int>(counted_.column)};
  }

  [[noreturn]] void fail_at(size_t offset, const std::string& message) const {
    throw TemplateError(TemplateError::Kind::syntax, message, position(offset));
  }

  Token& emit(TokenType type, std::string text, size_t offset) {
    Token token;
    token.type = type;
    token.text = std::move(text);
    token.pos = position(offset);
    tokens_.push_back(std::move(token));
    return tokens_.back();
  }

  bool starts_with(size_t at, std::string_view s) const { return std::string_view(src_).substr(at, s.size()) == s; }

  // `\s*` from `at`, Python's Unicode whitespace.
  size_t skip_whitespace(size_t at) const {
    while (at < src_.size()) {
      const auto c = static_cast<unsigned char>(src_[at]);
      if (c < 0x80) {
        if (!text::is_space(c)) break;
        ++at;
        continue;
      }
      size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      const std::u32string cp = text::decode(std::string_view(src_).substr(at, len));
      if (cp.size() != 1 || !text::is_space(cp[0])) break;
      at += len;
    }
    return at;
  }

  static bool all_whitespace(std::string_view s) {
    for (char32_t c : text::decode(s))
      if (!text::is_space(c)) return false;
    return true;
  }

  // The text before a tag, after the tag's whitespace control ('-' strips all trailing
  // whitespace; otherwise lstrip_blocks drops a whitespace-only line start before block and
  // comment tags).
  std::string controlled_text(std::string text, char sign, bool lstrip_applies) const {
    if (sign == '-') return text::strip(text, std::nullopt, false, true);
    if (sign != '+' && lstrip_applies) {
      const size_t newline = text.rfind('\n');
      const size_t line_start = newline == std::string::npos ? 0 : newline + 1;
      if ((line_start > 0 || line_starting_) && line_start < text.size() &&
          all_whitespace(std::string_view(text).substr(line_start)))
        text.erase(line_start);
    }
    return text;
  }

  // A block end: `\+%}` | `\-%}\s*` | `%}\n?` (trim_blocks); returns the end offset or npos.
  size_t match_block_end(size_t at, std::string_view close) const {
    if (starts_with(at, "+") && starts_with(at + 1, close)) return at + 1 + close.size();
    if (starts_with(at, "-") && starts_with(at + 1, close)) return skip_whitespace(at + 1 + close.size());
    if (starts_with(at, close)) {
      const size_t end = at + close.size();
      return end < src_.size() && src_[end] == '\n' ? end + 1 : end;
    }
    return std::string::npos;
  }

  // `{%(\-|\+|)\s*raw\s*(?:\-%}\s*|%})` at `at`; returns the end offset or npos.
  size_t match_raw_begin(size_t at, char* sign) const {
    size_t i = at + 2;
    *sign = 0;
    if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) *sign = src_[i++];
    i = skip_whitespace(i);
    if (!starts_with(i, "raw")) return std::string::npos;
    i = skip_whitespace(i + 3);
    if (starts_with(i, "-%}")) return skip_whitespace(i + 3);
    if (starts_with(i, "%}")) return i + 2;
    return std::string::npos;
  }

  void lex_root() {
    size_t tag = pos_;
    while (true) {
      tag = src_.find('{', tag);
      if (tag == std::string::npos || tag + 1 >= src_.size()) {
        tag = std::string::npos;
        break;
      }
      const char next = src_[tag + 1];
      if (next == '{' || next == '%' || next == '#') break;
      ++tag;
    }
    if (tag == std::string::npos) {
      emit(TokenType::data, src_.substr(pos_), pos_);
      pos_ = src_.size();
      return;
    }
    const char kind = src_[tag + 1];
    char sign = 0;
    size_t raw_end = std::string::npos;
    if (kind == '%') raw_end = match_raw_begin(tag, &sign);
    if (raw_end == std::string::npos) {
      const char c = tag + 2 < src_.size() ? src_[tag + 2] : 0;
      sign = (c == '-' || c == '+') ? c : 0;
    }
    const std::string text = controlled_text(src_.substr(pos_, tag - pos_), sign, kind != '{');
    if (!text.empty()) emit(TokenType::data, text, pos_);
    if (raw_end != std::string::npos) {
      line_starting_ = src_[raw_end - 1] == '\n';
      lex_raw(raw_end, tag);
      return;
    }
    line_starting_ = false;
    const size_t after = tag + 2 + (sign ? 1 : 0);
    if (kind == '#') {
      lex_comment(after, tag);
    } else if (kind == '{') {
      emit(TokenType::variable_begin, "{{", tag);
      state_ = State::variable;
      pos_ = after;
    } else {
      emit(TokenType::block_begin, "{%", tag);
      state_ = State::block;
      pos_ = after;
    }
  }

  // `(.*?)((?:\+#}|\-#}\s*|#}\n?))`
  void lex_comment(size_t from, size_t open) {
    for (size_t at = from; at < src_.size(); ++at) {
      const size_t end = match_block_end(at, "#}");
      if (end != std::string::npos) {
        line_starting_ = src_[end - 1] == '\n';
        pos_ = end;
        return;
      }
    }
    fail_at(open, "Missing end of comment tag");
  }

  // `(.*?)((?:{%(\-|\+|))\s*endraw\s*(?:\+%}|\-%}\s*|%}\n?))`
  void lex_raw(size_t from, size_t open) {
    for (size_t at = src_.find("{%", from); at != std::string::npos; at = src_.find("{%", at + 1)) {
      size_t i = at + 2;
      char sign = 0;
      if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) sign = src_[i++];
      i = skip_whitespace(i);
      if (!starts_with(i, "endraw")) continue;
      i = skip_whitespace(i + 6);
      const size_t end = match_block_end(i, "%}");
      if (end == std::string::npos) continue;
      const std::string text = controlled_text(src_.substr(from, at - from), sign, true);
      if (!text.empty()) emit(TokenType::data, text, from);
      line_starting_ = src_[end - 1] == '\n';
      pos_ = end;
      return;
    }
    fail_at(open, "Missing end of raw directive");
  }

  // `(\d+_)*\d+` from `at`; npos when no digit is there.
  size_t match_digits(size_t at) const {
    if (at >= src_.size() || !is_digit(src_[at])) return std::string::npos;
    while (at < src_.size() && is_digit(src_[at])) ++at;
    while (at + 1 < src_.size() && src_[at] == '_' && is_digit(src_[at + 1])) {
      ++at;
      while (at < src_.size() && is_digit(src_[at])) ++at;
    }
    return at;
  }

  size_t match_exponent(size_t at) const {
    if (at >= src_.size() || (src_[at] != 'e' && src_[at] != 'E')) return std::string::npos;
    ++at;
    if (at < src_.size() && (src_[at] == '+' || src_[at] == '-')) ++at;
    return match_digits(at);
  }

  // `(?<!\.)(\d+_)*\d+((\.(\d+_)*\d+)?e[+\-]?(\d+_)*\d+|\.(\d+_)*\d+)`
  size_t match_float(size_t at) const {
    if (at > 0 && src_[at - 1] == '.') return std::string::npos;
    const size_t whole = match_digits(at);
    if (whole == std::string::npos) return std::string::npos;
    const size_t fraction = (whole < src_.size() && src_[whole] == '.') ? match_digits(whole + 1) : std::string::npos;
    if (fraction != std::string::npos) {
      const size_t exponent = match_exponent(fraction);
      if (exponent != std::string::npos) return exponent;
    }
    const size_t exponent = match_exponent(whole);
    if (exponent != std::string::npos) return exponent;
    return fraction;
  }

  // `0b(_?[0-1])+ | 0o(_?[0-7])+ | 0x(_?[\da-f])+ | [1-9](_?\d)* | 0(_?0)*`, case-insensitive.
  size_t match_integer(size_t at, int* base) const {
    auto run = [&](size_t i, auto valid) {
      size_t end = std::string::npos;
      while (i < src_.size()) {
        size_t j = i;
        if (src_[j] == '_') ++j;
        if (j >= src_.size() || !valid(src_[j])) break;
        end = i = j + 1;
      }
      return end;
    };
    if (at >= src_.size() || !is_digit(src_[at])) return std::string::npos;
    if (src_[at] == '0' && at + 1 < src_.size()) {
      const char p = static_cast<char>(src_[at + 1] | 0x20);
      size_t end = std::string::npos;
      if (p == 'b') end = run(at + 2, [](char c) { return c == '0' || c == '1'; }), *base = 2;
      if (p == 'o') end = run(at + 2, [](char c) { return c >= '0' && c <= '7'; }), *base = 8;
      if (p == 'x')
        end = run(at + 2, [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }), *base = 16;
      if (end != std::string::npos) return end;
    }
    *base = 10;
    if (src_[at] == '0') {
      const size_t end = run(at + 1, [](char c) { return c == '0'; });
      return end == std::string::npos ? at + 1 : end;
    }
    const size_t end = run(at + 1, [](char c) { return is_digit(c); });
    return end == std::string::npos ? at + 1 : end;
  }

  // `\w+`: ASCII word characters and any non-ASCII character (Python identifiers).
  size_t match_name(size_t at) const {
    size_t i = at;
    while (i < src_.size()) {
      const auto c = static_cast<unsigned char>(src_[i]);
      if (c >= 0x80 || std::isalnum(c) || c == '_')
        ++i;
      else
        break;
    }
    return i == at ? std::string::npos : i;
  }

  // `'([^'\\]*(?:\\.[^'\\]*)*)'` or the same with double quotes.
  size_t match_string(size_t at) const {
    const char quote = src_[at];
    if (quote != '\'' && quote != '"') return std::string::npos;
    for (size_t i = at + 1; i < src_.size(); ++i) {
      if (src_[i] == '\\') {
        ++i;
      } else if (src_[i] == quote) {
        return i + 1;
      }
    }
    return std::string::npos;
  }

  // Python's unicode-escape decoding of a literal's body, after jinja2's
  // encode("ascii", "backslashreplace").
  std::string unescape(std::string_view body, size_t offset) const {
    std::string out;
    auto hex = [&](size_t at, size_t count, const char* name) -> char32_t {
      if (at + count > body.size()) fail_at(offset, std::string("truncated ") + name + " escape");
      char32_t v = 0;
      for (size_t k = 0; k < count; ++k) {
        const char c = body[at + k];
        if (!std::isxdigit(static_cast<unsigned char>(c)))
          fail_at(offset, std::string("truncated ") + name + " escape");
        v = v * 16 + static_cast<char32_t>(is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
      }
      return v;
    };
    for (size_t i = 0; i < body.size(); ++i) {
      if (body[i] != '\\') {
        out += body[i];
        continue;
      }
      if (++i >= body.size()) fail_at(offset, "\\ at end of string");
      const char c = body[i];
      switch (c) {
        case '\n':
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'v':
          out += '\v';
          break;
        case 'x':
          text::append_utf8(out, hex(i + 1, 2, "\\xXX"));
          i += 2;
          break;
        case 'u':
          text::append_utf8(out, hex(i + 1, 4, "\\uXXXX"));
          i += 4;
          break;
        case 'U': {
          const char32_t v = hex(i + 1, 8, "\\UXXXXXXXX");
          if (v > 0x10FFFF) fail_at(offset, "illegal Unicode character");
          text::append_utf8(out, v);
          i += 8;
          break;
        }
        case 'N':
          fail_at(offset, "\\N{...} escapes are not supported; write the character itself");
        default:
          if (c >= '0' && c <= '7') {
            char32_t v = 0;
            size_t k = 0;
            for (; k < 3 && i + k < body.size() && body[i + k] >= '0' && body[i + k] <= '7'; ++k)
              v = v * 8 + static_cast<char32_t>(body[i + k] - '0');
            text::append_utf8(out, v);
            i += k - 1;
          } else if (static_cast<unsigned char>(c) >= 0x80) {
            // backslashreplace turned the character into \xhh, \uhhhh or \Uhhhhhhhh, whose
            // backslash the preceding one escaped: the text of the escape is what remains.
            size_t len = static_cast<unsigned char>(c) >= 0xF0 ? 4 : static_cast<unsigned char>(c) >= 0xE0 ? 3 : 2;
            const std::u32string cp = text::decode(body.substr(i, len));
            char buffer[16];
            const auto v = static_cast<unsigned>(cp.empty() ? 0xFFFD : cp[0]);
            std::snprintf(buffer, sizeof buffer, v <= 0xFF ? "\\x%02x" : v <= 0xFFFF ? "\\u%04x" : "\\U%08x", v);
            out += buffer;
            i += len - 1;
          } else {
            out += '\\';
            out += c;
          }
      }
    }
    return out;
  }

  void lex_tag() {
    const bool block = state_ == State::block;
    if (balance_.empty()) {
      const size_t end = block                      ? match_block_end(pos_, "%}")
                         : starts_with(pos_, "-}}") ? skip_whitespace(pos_ + 3)
                         : starts_with(pos_, "}}")  ? pos_ + 2
                                                    : std::string::npos;
      if (end != std::string::npos) {
        emit(block ? TokenType::block_end : TokenType::variable_end, block ? "%}" : "}}", pos_);
        line_starting_ = src_[end - 1] == '\n';
        pos_ = end;
        state_ = State::root;
        return;
      }
    }
    const size_t start = pos_;
    size_t end = skip_whitespace(pos_);
    if (end != start) {
      line_starting_ = src_[end - 1] == '\n';
      pos_ = end;
      return;
    }
    line_starting_ = false;
    if ((end = match_float(start)) != std::string::npos) {
      std::string digits;
      for (size_t i = start; i < end; ++i)
        if (src_[i] != '_') digits += src_[i];
      emit(TokenType::floating, src_.substr(start, end - start), start).floating = std::strtod(digits.c_str(), nullptr);
      pos_ = end;
      return;
    }
    int base = 10;
    if ((end = match_integer(start, &base)) != std::string::npos) {
      const std::string literal = src_.substr(start, end - start);
      const auto value = parse_int(literal, 0);
      if (!value) fail_at(start, "integer literal " + literal + " does not fit 64 bits");
      emit(TokenType::integer, literal, start).integer = *value;
      pos_ = end;
      return;
    }
    if ((end = match_name(start)) != std::string::npos) {
      emit(TokenType::name, src_.substr(start, end - start), start);
      pos_ = end;
      return;
    }
    if ((end = match_string(start)) != std::string::npos) {
      emit(TokenType::string, unescape(std::string_view(src_).substr(start + 1, end - start - 2), start), start);
      pos_ = end;
      return;
    }
    for (const Operator& op : kOperators) {
      if (!starts_with(start, op.symbol)) continue;
      balance(op, start);
      emit(op.type, std::string(op.symbol), start);
      pos_ = start + op.symbol.size();
      return;
    }
    const std::u32string c = text::decode(std::string_view(src_).substr(start, 4));
    std::string shown;
    text::append_utf8(shown, c.empty() ? U'?' : c[0]);
    fail_at(start, "unexpected char " + text::repr(shown) + " at " + std::to_string(start));
  }

  void balance(const Operator& op, size_t at) {
    const char c = op.symbol[0];
    if (op.symbol.size() != 1) return;
    if (c == '{') balance_.push_back('}');
    if (c == '(') balance_.push_back(')');
    if (c == '[') balance_.push_back(']');
    if (c == '}' || c == ')' || c == ']') {
      if (balance_.empty()) fail_at(at, std::string("unexpected '") + c + "'");
      const char expected = balance_.back();
      balance_.pop_back();
      if (expected != c) fail_at(at, std::string("unexpected '") + c + "', expected '" + expected + "'");
    }
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  struct CountedColumn {
    size_t offset = 0;  // a byte offset whose column is known
    int64_t column = 1;
  };
  mutable CountedColumn counted_;
  size_t pos_ = 0;
  State state_ = State::root;
  bool line_starting_ = true;  // the last match ended a line (lstrip_blocks applies at start of text)
  std::vector<char> balance_;  // closing brackets expected inside a tag
  std::vector<Token> tokens_;
};

}  // namespace

std::string describe(TokenType type) {
  switch (type) {
    case TokenType::data:
      return "template data / text";
    case TokenType::variable_begin:
      return "begin of print statement";
    case TokenType::variable_end:
      return "end of print statement";
    case TokenType::block_begin:
      return "begin of statement block";
    case TokenType::block_end:
      return "end of statement block";
    case TokenType::name:
      return "name";
    case TokenType::string:
      return "string";
    case TokenType::integer:
      return "integer";
    case TokenType::floating:
      return "float";
    case TokenType::eof:
      return "end of template";
    default:
      break;
  }
  for (const Operator& op : kOperators)
    if (op.type == type) return std::string(op.symbol);
  return "token";
}

std::string describe(const Token& token) {
  if (token.type == TokenType::name) return token.text;
  return describe(token.type);
}

std::string normalize_newlines(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::vector<Token> tokenize(const std::string& source) { return Lexer(normalize_newlines(source)).run(); }

}  // namespace fe::jinja
