// tokenizer/chat_template.h — a model's chat template (tokenizer_config.json → "chat_template"),
// rendered as HF transformers' apply_chat_template renders it, byte for byte.
//
// HF renders with jinja2's ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
// extensions=[loopcontrols, {% generation %}]) plus the globals raise_exception(message) and
// strftime_now(format) and a `tojson` filter that is json.dumps(ensure_ascii=False, indent=,
// separators=, sort_keys=). Undefined variables are jinja2's default Undefined: they print as "",
// are false, iterate as empty, and fail when used in arithmetic, called, or looked into. Values
// print as Python prints them (None, True, 1.0, ['a'], {'k': 1}). This class reproduces that with
// an interpreter of its own (tokenizer/jinja_*: lexer → parser → syntax tree → renderer), because
// no C++ library implements Jinja.
//
// Supported: {{ }}, {# #}, {% raw %}, whitespace control (-, +, trim_blocks, lstrip_blocks); for
// (loop.*, else, `if` filter, unpacking, recursive), if/elif/else, set (also `ns.attr =`, tuple
// targets and {% set x %}...{% endset %}), macro, call, filter blocks, with, break, continue,
// generation, print; all of jinja2's expressions, tests and filters except those listed below;
// str/list/dict methods (str.format included) and the `%` operator on strings.
//
// Deliberately not supported, each a clear error naming it: the tags include, import, from,
// extends, block, autoescape (syntax error); the filters groupby, pprint, random, striptags,
// urlencode, urlize, wordwrap, xmlattr, filesizeformat and the globals lipsum, cycler, joiner
// (error when used); \N{...} string escapes. Known differences from Python, none of which chat
// templates rely on: integers are 64-bit (overflow is an error, where Python grows them);
// generators print as "<generator object>" (Python adds a name and an address); a markupsafe.Markup
// string (from |safe or |escape) stays Markup through `+`, `*`, indexing and its own methods, not
// through every filter; %c and {:c} of a surrogate code point are an error (Python makes a str
// that no encoder accepts); nesting and recursion stop at fixed depths near Python's recursion
// limit; one operation may build at most 256 MiB (a string, or a list's items), where Python builds
// until memory runs out. Strings follow Python 3.11's Unicode 14.0 data (see jinja_text.h).
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace fe {

namespace jinja {
struct Template;
}

class ChatTemplate {
 public:
  // Parses `source`. Syntax errors (std::runtime_error) read "ORIGIN:LINE:COL: syntax error:
  // MESSAGE" followed by the offending line and a caret; `origin` names where the template came
  // from, e.g. "model/tokenizer_config.json: chat_template".
  ChatTemplate(std::string source, std::string origin);

  // The text the template renders with `context`'s keys as variables, as
  // apply_chat_template(messages, tools=None, documents=None, add_generation_prompt=False,
  // **kwargs) does: those four default as shown when absent; everything else (bos_token,
  // eos_token, custom keys) comes from `context`, which must be a JSON object. Runtime errors
  // (undefined attribute used, type errors) read "ORIGIN:LINE:COL: MESSAGE" plus the line; a
  // template's raise_exception(message) reads "ORIGIN:LINE:COL: message" exactly.
  // nlohmann::json sorts object keys; pass an ordered_json to keep the key order of the source
  // JSON, which Python keeps (it shows in `tojson` and in printed dicts).
  std::string render(const nlohmann::json& context) const;
  std::string render(const nlohmann::ordered_json& context) const;

 private:
  template <typename Json>
  std::string render_json(const Json& context) const;

  std::string source_;  // as the lexer saw it, for the excerpts in error messages
  std::string origin_;
  std::shared_ptr<const jinja::Template> template_;
};

}  // namespace fe
