// tokenizer/chat_template.cpp — the public face of the Jinja interpreter (see chat_template.h):
// HF's render defaults, and errors that name the template's origin, line and column.
#include "tokenizer/chat_template.h"

#include <algorithm>
#include <new>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

#include "tokenizer/jinja_lexer.h"
#include "tokenizer/jinja_parser.h"
#include "tokenizer/jinja_render.h"
#include "tokenizer/jinja_text.h"

namespace fe {
namespace {

// The template line `line` with a caret under `column`, trimmed to a window around the column.
std::string excerpt(const std::string& source, const jinja::SourcePos& pos) {
  constexpr int64_t kContext = 60;
  size_t start = 0;
  for (int line = 1; line < pos.line && start != std::string::npos; ++line) {
    start = source.find('\n', start);
    if (start != std::string::npos) ++start;
  }
  if (start == std::string::npos) return "";
  const size_t end = source.find('\n', start);
  const std::u32string text = jinja::text::decode(source.substr(start, end == std::string::npos ? end : end - start));
  const int64_t column = std::max(pos.column - 1, 0);
  const int64_t first = std::max<int64_t>(column - kContext, 0);
  const int64_t last = std::min<int64_t>(column + kContext, static_cast<int64_t>(text.size()));
  std::string shown = first > 0 ? "..." : "";
  const int64_t caret = column - first + static_cast<int64_t>(shown.size());
  std::u32string window = text.substr(first, last - first);
  for (char32_t& c : window)
    if (c == '\t') c = ' ';
  shown += jinja::text::encode(window);
  if (last < static_cast<int64_t>(text.size())) shown += "...";
  return "\n    " + shown + "\n    " + std::string(caret, ' ') + "^";
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, std::string origin)
    : source_(jinja::normalize_newlines(source)), origin_(std::move(origin)) {
  try {
    template_ = std::make_shared<const jinja::Template>(jinja::parse(source));
  } catch (const jinja::TemplateError& e) {
    throw std::runtime_error(origin_ + ":" + std::to_string(e.pos().line) + ":" + std::to_string(e.pos().column) +
                             ": syntax error: " + e.message() + excerpt(source_, e.pos()));
  }
}

template <typename Json>
std::string ChatTemplate::render_json(const Json& context) const {
  if (!context.is_object())
    throw std::runtime_error(origin_ + ": the chat template's context must be a JSON object of variables, got " +
                             std::string(context.type_name()));
  jinja::Dict variables;
  try {
    variables.set(jinja::Value::string("tools"), jinja::Value::none());
    variables.set(jinja::Value::string("documents"), jinja::Value::none());
    variables.set(jinja::Value::string("add_generation_prompt"), jinja::Value::boolean(false));
    for (auto it = context.begin(); it != context.end(); ++it)
      variables.set(jinja::Value::string(it.key()), jinja::Value::from_json(it.value()));
    return jinja::render(*template_, variables);
  } catch (const jinja::TemplateError& e) {
    if (e.pos().line == 0) throw std::runtime_error(origin_ + ": " + e.message());
    const std::string where =
        origin_ + ":" + std::to_string(e.pos().line) + ":" + std::to_string(e.pos().column) + ": ";
    if (e.kind() == jinja::TemplateError::Kind::raised) throw std::runtime_error(where + e.message());
    throw std::runtime_error(where + e.message() + excerpt(source_, e.pos()));
  } catch (const std::bad_alloc&) {  // the renderer reports where; this is the context's JSON
    throw std::runtime_error(origin_ + ": out of memory while converting the context for the chat template");
  }
}

std::string ChatTemplate::render(const nlohmann::json& context) const { return render_json(context); }
std::string ChatTemplate::render(const nlohmann::ordered_json& context) const { return render_json(context); }

}  // namespace fe
