// tokenizer/jinja_value.h — the values a chat template computes with, and Python's semantics for
// them (the Jinja interpreter's object model; see chat_template.h for the whole).
//
// Jinja evaluates expressions as Python does, so a template's output depends on Python's rules:
// str() of a list is "['a', 'b']", 1 == 1.0, `/` gives a float, lists are shared by reference,
// filters such as `select` return one-shot generators (always true, no len()), an undefined
// variable prints as "" but fails when used in arithmetic. This header holds those rules for the
// types JSON and templates produce: undefined, None, bool, int (64-bit here; Python's are
// unbounded, overflow is an error), float, str (UTF-8; `markup` marks markupsafe.Markup), list,
// tuple, dict (insertion-ordered), generator, jinja2's Namespace and LoopContext, and callables.
//
// Errors are TemplateError. The functions here throw them without a position; the renderer adds
// the position of the expression being evaluated.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fe::jinja {

struct SourcePos {
  int line = 0;    // 1-based; 0 when not known
  int column = 0;  // 1-based, in code points
};

class TemplateError : public std::runtime_error {
 public:
  enum class Kind {
    syntax,   // the template does not parse
    runtime,  // Python would raise while rendering (TypeError, UndefinedError, ...)
    raised,   // the template called raise_exception(message)
  };
  TemplateError(Kind kind, std::string message, SourcePos pos = {});
  Kind kind() const { return kind_; }
  const SourcePos& pos() const { return pos_; }
  const std::string& message() const { return message_; }
  // The same error at `pos`, unless it already has a position.
  TemplateError located(SourcePos pos) const;

 private:
  Kind kind_;
  std::string message_;
  SourcePos pos_;
};

// A runtime error (TypeError, ValueError, UndefinedError...) whose position the renderer adds.
[[noreturn]] void fail(std::string message);

// The most bytes one operation may build: one string, or one list's items at sizeof(Value) each.
// Python builds whatever it is asked to ('a' * 10**12, 'x'|indent(10**11)) until memory runs out;
// a template is user input, so an operation that would build more fails with "result too large"
// before it allocates. 256 MiB is a thousand times what a chat template produces.
constexpr uint64_t kMaxResultBytes = uint64_t{256} << 20;
// Fails with "result too large" when `bytes` exceeds kMaxResultBytes.
void check_result_size(uint64_t bytes);
// out += text, unless that makes `out` larger than kMaxResultBytes ("result too large").
void append_checked(std::string& out, std::string_view text);
// count * unit_bytes, checked: fails with "result too large" when the product overflows or exceeds
// kMaxResultBytes.
uint64_t result_size(uint64_t count, uint64_t unit_bytes);

// chr(code_point) in UTF-8, for %c and {:c}: Python's OverflowError outside [0, 0x10FFFF]. A
// surrogate, which Python puts into a str that no encoder accepts, is an error here.
std::string code_point_char(int64_t code_point);

// snprintf(format, number) into a string of whatever length it needs (a precision of hundreds of
// digits writes hundreds of characters).
std::string format_number(const char* format, double number);

class Value;
using ValueList = std::vector<Value>;

struct Object {
  virtual ~Object() = default;
  // Drops the values it holds (see ObjectArena).
  virtual void release() = 0;
};

// Objects holding Values declare their destructor and release() here and define them in
// jinja_value.cpp, where Value is complete: a container of an incomplete type may not be destroyed
// (clang with libstdc++ rejects the implicit destructors).

// The objects created while one template renders. Templates can build reference cycles (a macro
// kept in the scope it closes over, a loop's `loop(...)` holding the loop's scope, a namespace
// holding itself) that shared ownership would never free; when the arena ends it empties every
// object still alive, which breaks them. An arena is active for its lifetime on its thread.
class ObjectArena {
 public:
  ObjectArena();
  ~ObjectArena();
  ObjectArena(const ObjectArena&) = delete;
  ObjectArena& operator=(const ObjectArena&) = delete;
  static void track(const std::shared_ptr<Object>& object);  // no-op outside an arena

 private:
  std::vector<std::weak_ptr<Object>> objects_;
  ObjectArena* previous_;
};

struct Sequence : Object {  // a list's or a tuple's items
  ValueList items;
  // Set for dict.keys()/values()/items() and range(): they iterate as lists but print as Python's
  // "dict_items([...])" and "range(0, 3)", and json.dumps refuses them.
  std::string view;       // "dict_items", "range", ...; empty for a list or tuple
  std::string view_repr;  // how a range prints
  ~Sequence() override;
  void release() override;
};

struct Dict : Object {
  std::vector<std::pair<Value, Value>> entries;  // insertion order, as Python dicts
  const Value* find(const Value& key) const;
  void set(Value key, Value value);
  ~Dict() override;
  void release() override;
};

// A Python generator: iterating consumes it, so a second loop over it sees nothing. Generators are
// lazy: the filter that made one runs when it is first consumed, so its errors surface there (and
// not at all when it is only tested for truth, which is always true).
struct Iterator : Object {
  std::function<ValueList()> produce;  // pending until first use
  ValueList items;
  size_t next = 0;
  ValueList& produced();
  ~Iterator() override;
  void release() override;
};

struct Namespace : Object {  // jinja2.utils.Namespace: attributes settable with {% set ns.x = ... %}
  Dict attributes;
  ~Namespace() override;
  void release() override;
};

struct CallArgs {
  ValueList positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

struct Callable : Object {
  std::string name;  // for messages: "raise_exception", "str.upper", "macro 'm'"
  std::function<Value(CallArgs&)> call;
  ~Callable() override;
  void release() override;
};

struct Loop : Object {  // jinja2.runtime.LoopContext
  ValueList items;
  int64_t index0 = 0;
  int64_t depth0 = 0;
  std::optional<ValueList> last_changed;       // loop.changed()'s memory
  std::function<Value(const Value&)> recurse;  // loop(items) of a `recursive` loop, else empty
  ~Loop() override;
  void release() override;
};

class Value {
 public:
  enum class Kind {
    undefined,
    none,
    boolean,
    integer,
    floating,
    string,
    list,
    tuple,
    dict,
    iterator,
    ns,
    callable,
    loop
  };

  Value() = default;  // undefined, as an unknown variable
  static Value undefined(std::string message, bool unsafe = false);
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value floating(double f);
  static Value string(std::string s, bool markup = false);
  static Value list(ValueList items = {});
  static Value tuple(ValueList items);
  // dict.keys()/values()/items() ("dict_keys"...) or a range (`repr` "range(0, 3)").
  static Value view(std::string name, ValueList items, std::string repr = "");
  static Value dict(std::shared_ptr<Dict> dict = nullptr);
  static Value iterator(ValueList items);
  static Value generator(std::function<ValueList()> produce);
  static Value ns(std::shared_ptr<Namespace> ns);
  static Value callable(std::string name, std::function<Value(CallArgs&)> call);
  static Value loop(std::shared_ptr<Loop> loop);
  static Value from_json(const nlohmann::json& json);
  static Value from_json(const nlohmann::ordered_json& json);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::undefined; }
  bool is_none() const { return kind_ == Kind::none; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_sequence() const { return kind_ == Kind::list || kind_ == Kind::tuple; }
  const std::string& view_name() const;  // non-empty for dict views and ranges (lists underneath)
  bool is_number() const { return kind_ == Kind::boolean || kind_ == Kind::integer || kind_ == Kind::floating; }
  bool is_integral() const { return kind_ == Kind::boolean || kind_ == Kind::integer; }

  bool as_bool() const { return bool_; }
  int64_t as_int() const { return integer_; }  // bool and int
  double as_float() const;                     // bool, int and float
  const std::string& as_string() const { return text_; }
  bool is_markup() const { return bool_; }
  ValueList& items() const { return static_cast<Sequence&>(*object_).items; }  // list, tuple
  Dict& as_dict() const { return static_cast<Dict&>(*object_); }
  Iterator& as_iterator() const { return static_cast<Iterator&>(*object_); }
  Namespace& as_ns() const { return static_cast<Namespace&>(*object_); }
  Callable& as_callable() const { return static_cast<Callable&>(*object_); }
  Loop& as_loop() const { return static_cast<Loop&>(*object_); }
  const Object* identity() const { return object_.get(); }
  // Why an undefined value is undefined ("'x' is undefined", "'dict object' has no attribute 'y'").
  const std::string& undefined_message() const { return text_; }
  bool undefined_is_unsafe() const { return bool_; }  // a sandbox refusal (SecurityError)

 private:
  Kind kind_ = Kind::undefined;
  bool bool_ = false;  // boolean value, markup flag, or unsafe-undefined flag
  int64_t integer_ = 0;
  double float_ = 0;
  std::string text_;  // string value or undefined message
  std::shared_ptr<Object> object_;
};

// Raises the error an undefined value raises when used (UndefinedError or SecurityError).
[[noreturn]] void fail_undefined(const Value& value);

// Python's type(x).__name__ ("str", "int", "NoneType", "generator", "Undefined", ...).
std::string type_name(const Value& value);
// jinja2's object_type_repr, used in undefined messages: "dict object", "None", "str object".
std::string object_type_repr(const Value& value);

bool truthy(const Value& value);
std::string to_str(const Value& value);   // str(x): what {{ x }} prints
std::string to_repr(const Value& value);  // repr(x): how x prints inside a container
std::string float_repr(double f);         // Python's repr(float): shortest round trip, "1.0", "1e+16"

bool equal(const Value& a, const Value& b);  // ==
enum class Order { lt, le, gt, ge };
// a < b, a <= b, a > b, a >= b: numbers, strings, lists and tuples (lexicographic); a TypeError
// across other types, as Python.
bool ordered(Order op, const Value& a, const Value& b);
bool less(const Value& a, const Value& b);

enum class BinaryOp { add, sub, mul, div, floordiv, mod, pow };
Value binary(BinaryOp op, const Value& a, const Value& b);
Value negate(const Value& value);
Value positive(const Value& value);
bool contains(const Value& container, const Value& item);  // item in container

// Iterates as Python's iter(): a list's items, a dict's keys, a str's characters; consumes a
// generator; an undefined value is empty; anything else is a TypeError.
ValueList iterate(const Value& value);
int64_t length(const Value& value);  // len(x); a TypeError for generators, numbers, None

// x[start:stop:step] on str, list and tuple.
Value slice(const Value& value, const Value& start, const Value& stop, const Value& step);

// json.dumps(value, ensure_ascii=, indent=, separators=, sort_keys=) as HF's `tojson` filter calls it.
struct JsonStyle {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // per level; absent: one line
  std::optional<std::pair<std::string, std::string>> separators;
  bool sort_keys = false;
};
std::string to_json(const Value& value, const JsonStyle& style);

// Integer parsing as Python's int(str, base) (whitespace, sign, underscores, 0x/0o/0b prefixes).
std::optional<int64_t> parse_int(std::string_view text, int base);
// float(str): decimal and exponent forms, inf/nan; std::nullopt when Python raises ValueError.
std::optional<double> parse_float(std::string_view text);

}  // namespace fe::jinja
