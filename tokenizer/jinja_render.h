// tokenizer/jinja_render.h — walks a parsed template (jinja_parser.h) and writes its output, with
// jinja2's scoping: a `for` body and a macro body get their own scope (a `set` inside them is gone
// after them; that is why templates use namespace()), `if` does not; variables resolve through the
// enclosing scopes, then the render context, then the environment's globals (jinja_builtins.h).
//
// Loops follow jinja2's LoopContext (loop.index, first, last, length, revindex, previtem,
// nextitem, cycle(), changed(), loop(...) in `recursive` loops) and run the `else` body when no
// iteration ran to its end. Macros take positional and keyword arguments and defaults evaluated at
// call time, `varargs`/`kwargs`/`caller` when the body mentions them; {% call %} passes its body as
// `caller`.
#pragma once

#include <string>

#include "tokenizer/jinja_parser.h"

namespace fe::jinja {

// The text `t` renders with the variables of `context` (names to values). Throws TemplateError
// with the position of the expression or statement that failed.
std::string render(const Template& t, const Dict& context);

}  // namespace fe::jinja
