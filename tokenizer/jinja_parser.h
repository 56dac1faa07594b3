// tokenizer/jinja_parser.h — builds the syntax tree (jinja_ast.h) from the lexer's tokens with
// jinja2's grammar: its operator precedence (`if`-`else` < or < and < not < comparisons and `in`
// < + - < ~ < * / // % < ** < unary - + < filters and tests < calls, subscripts, attributes), its
// statements (for, if, set, macro, call, filter, with, and the loopcontrols extension's break and
// continue), and HF's {% generation %} block.
//
// Like jinja2's compiler, an unknown filter or test is a syntax error unless it sits in an `if`
// statement or an `if` expression, where jinja2 defers the error until it runs.
//
// Not supported, each a syntax error that names the tag: include, import, from, extends, block,
// autoescape (a chat template is one self-contained string).
#pragma once

#include <string>

#include "tokenizer/jinja_ast.h"

namespace fe::jinja {

struct Template {
  Body body;
  FrameLocals body_locals;
};

// Throws TemplateError (syntax) with the position of the offending token.
Template parse(const std::string& source);

}  // namespace fe::jinja
