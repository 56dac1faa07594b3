// tokenizer/jinja_builtins.h — what a chat template can call, in the environment HF transformers
// renders chat templates with (`_compile_jinja_template`): jinja2's ImmutableSandboxedEnvironment
// with its filters and tests, HF's `tojson` filter (json.dumps, ensure_ascii=False, with the
// indent/separators/sort_keys arguments), the globals `range` (at most 100000 items, as the
// sandbox), `dict`, `namespace`, `raise_exception(message)` and `strftime_now(format)`, and the
// attributes and methods of Python's str, list and dict.
//
// The sandbox refuses methods that modify a list or dict (append, extend, insert, remove, reverse,
// sort; dict clear, pop, popitem, setdefault, update) and names starting with "_": the attribute
// is an undefined value whose use raises "access to attribute 'append' of 'list' object is unsafe."
// As in Python, list.pop and list.clear are allowed and modify the list in place.
#pragma once

#include <string>
#include <string_view>

#include "tokenizer/jinja_value.h"

namespace fe::jinja {

bool has_filter(std::string_view name);
bool has_test(std::string_view name);

// value | name(args...). An unknown name is a runtime error ("No filter named 'x'.").
Value apply_filter(const std::string& name, const Value& value, CallArgs& args);
// value is name(args...)
bool apply_test(const std::string& name, const Value& value, CallArgs& args);

// The environment's globals (range, dict, namespace, raise_exception, strftime_now), or an
// undefined value ("'name' is undefined").
Value global(const std::string& name);

// x.name: the Python attribute (a str method, dict.items...) first, else the item x["name"].
Value get_attribute(const Value& object, const std::string& name);
// x[key]: the item first, else (for a str key) the Python attribute.
Value get_item(const Value& object, const Value& key);

// f(args...): callables, and the errors Python raises for calling anything else.
Value call(const Value& callee, CallArgs& args);

}  // namespace fe::jinja
