// tokenizer/jinja_lexer.h — splits a Jinja template into tokens, as jinja2's lexer does under HF's
// settings (trim_blocks, lstrip_blocks, default delimiters, keep_trailing_newline off).
//
// Whitespace control happens here, so the parser and renderer never see it: `{%-`/`{{-`/`{#-`
// strip the text before the tag, `-%}`/`-}}`/`-#}` the whitespace after it; trim_blocks drops the
// first newline after a block or comment tag; lstrip_blocks drops the spaces and tabs before a
// block or comment tag that starts its line (`{%+` opts out); `{% raw %}...{% endraw %}` becomes
// plain text. Line endings become "\n" and one trailing newline of the template is dropped.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace fe::jinja {

enum class TokenType {
  data,            // template text
  variable_begin,  // {{
  variable_end,    // }}
  block_begin,     // {%
  block_end,       // %}
  name,
  string,
  integer,
  floating,
  add,
  sub,
  div,
  floordiv,
  mul,
  mod,
  pow,
  tilde,
  lbracket,
  rbracket,
  lparen,
  rparen,
  lbrace,
  rbrace,
  eq,
  ne,
  gt,
  gteq,
  lt,
  lteq,
  assign,
  dot,
  colon,
  pipe,
  comma,
  semicolon,
  eof,
};

struct Token {
  TokenType type = TokenType::eof;
  std::string text;  // data, a name, a string literal's value, or the source text of other tokens
  int64_t integer = 0;
  double floating = 0;
  SourcePos pos;
};

// jinja2's description of a token in error messages: a name's text, an operator's symbol,
// "end of statement block", "end of template", ...
std::string describe(const Token& token);
std::string describe(TokenType type);

// The tokens of `source`, ending with one eof token. Throws TemplateError (syntax) with a position.
std::vector<Token> tokenize(const std::string& source);

// `source` as the lexer sees it: "\r\n" and "\r" become "\n" and one trailing newline is dropped.
// Token positions refer to this text.
std::string normalize_newlines(const std::string& source);

}  // namespace fe::jinja
