// tokenizer/jinja_value.cpp — Python's semantics for the interpreter's values (see jinja_value.h).
#include "tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>

#include "tokenizer/jinja_text.h"

namespace fe::jinja {
namespace {

[[noreturn]] void fail_unsupported(const char* op, const Value& a, const Value& b) {
  fail(std::string("unsupported operand type(s) for ") + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
}

void check_defined(const Value& a, const Value& b) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
}

int64_t checked(bool overflow, int64_t result) {
  if (overflow) fail("integer overflow: the result does not fit 64 bits (Python's integers are unbounded)");
  return result;
}

// Python's float floor division and modulo (the result of % takes the divisor's sign).
std::pair<double, double> float_divmod(double a, double b) {
  if (b == 0) fail("float divmod(): division by zero");
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0) {
    if ((b < 0) != (mod < 0)) {
      mod += b;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, b);
  }
  double floordiv;
  if (div != 0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, a / b);
  }
  return {floordiv, mod};
}

int64_t int_floordiv(int64_t a, int64_t b) {
  if (b == 0) fail("integer division or modulo by zero");
  if (a == std::numeric_limits<int64_t>::min() && b == -1) checked(true, 0);
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t int_mod(int64_t a, int64_t b) {
  if (b == 0) fail("integer division or modulo by zero");
  if (b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

// seq * times: the result's size is checked before anything is built.
Value repeat(const Value& seq, int64_t times) {
  const uint64_t copies = times > 0 ? static_cast<uint64_t>(times) : 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    std::string out;
    if (!s.empty() && copies > 0) {
      out.reserve(result_size(copies, s.size()));
      for (uint64_t i = 0; i < copies; ++i) out += s;
    }
    return Value::string(std::move(out), seq.is_markup());
  }
  const ValueList& items = seq.items();
  ValueList out;
  if (!items.empty() && copies > 0) {
    out.reserve(result_size(copies, items.size() * sizeof(Value)) / sizeof(Value));
    for (uint64_t i = 0; i < copies; ++i) out.insert(out.end(), items.begin(), items.end());
  }
  return seq.kind() == Value::Kind::list ? Value::list(std::move(out)) : Value::tuple(std::move(out));
}

// Python stops recursing through nested containers at its recursion limit (RecursionError). A
// template can nest lists as deep as it likes ({% set ns.x = [ns.x] %} in a loop), so every walk
// over a value's containers stops at this depth instead of exhausting the stack.
constexpr int kMaxValueDepth = 1000;
thread_local int value_depth = 0;

struct NestedValue {
  explicit NestedValue(const char* while_doing) {
    if (++value_depth > kMaxValueDepth) {
      --value_depth;
      fail(std::string("maximum recursion depth exceeded ") + while_doing);
    }
  }
  ~NestedValue() { --value_depth; }
  NestedValue(const NestedValue&) = delete;
  NestedValue& operator=(const NestedValue&) = delete;
};

// The containers whose repr() is being written on this thread, outermost first. A container met
// again inside itself prints as Python's Py_ReprEnter makes it print: [...], (...), {...}.
thread_local std::vector<const void*> repr_in_progress;

struct ReprEntry {
  explicit ReprEntry(const void* object) {
    if (std::find(repr_in_progress.begin(), repr_in_progress.end(), object) != repr_in_progress.end()) return;
    if (repr_in_progress.size() >= static_cast<size_t>(kMaxValueDepth))
      fail("maximum recursion depth exceeded while getting the repr of an object");
    repr_in_progress.push_back(object);
    entered = true;
  }
  ~ReprEntry() {
    if (entered) repr_in_progress.pop_back();
  }
  ReprEntry(const ReprEntry&) = delete;
  ReprEntry& operator=(const ReprEntry&) = delete;
  bool entered = false;  // false: `object` is being printed further out
};

bool is_repeatable(const Value& v) { return v.is_string() || v.is_sequence(); }

}  // namespace

std::string code_point_char(int64_t code_point) {
  if (code_point < 0 || code_point > 0x10FFFF) fail("%c arg not in range(0x110000)");
  if (code_point >= 0xD800 && code_point <= 0xDFFF) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "%04X", static_cast<unsigned>(code_point));
    fail(std::string("%c arg U+") + hex +
         " is a surrogate, which UTF-8 text cannot hold (Python makes a str that no encoder accepts)");
  }
  std::string out;
  text::append_utf8(out, static_cast<char32_t>(code_point));
  return out;
}

bool ordered(Order op, const Value& a, const Value& b) {
  static const char* kSymbols[] = {"<", "<=", ">", ">="};
  check_defined(a, b);
  auto apply = [op](auto x, auto y) {
    switch (op) {
      case Order::lt:
        return x < y;
      case Order::le:
        return x <= y;
      case Order::gt:
        return x > y;
      case Order::ge:
        return x >= y;
    }
    return false;
  };
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return apply(a.as_int(), b.as_int());
    return apply(a.as_float(), b.as_float());
  }
  if (a.is_string() && b.is_string()) return apply(a.as_string().compare(b.as_string()), 0);
  if (a.is_sequence() && a.kind() == b.kind()) {
    const NestedValue nested("in comparison");
    const ValueList &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!equal(x[i], y[i])) return ordered(op, x[i], y[i]);
    return apply(x.size(), y.size());
  }
  fail(std::string("'") + kSymbols[static_cast<int>(op)] + "' not supported between instances of '" + type_name(a) +
       "' and '" + type_name(b) + "'");
}

namespace {

std::string join_repr(const ValueList& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += to_repr(items[i]);
  }
  return out;
}

std::string dict_repr(const Dict& dict) {
  const ReprEntry entry(&dict);
  if (!entry.entered) return "{...}";
  std::string out = "{";
  for (size_t i = 0; i < dict.entries.size(); ++i) {
    if (i) out += ", ";
    out += to_repr(dict.entries[i].first) + ": " + to_repr(dict.entries[i].second);
  }
  return out + "}";
}

std::string json_key(const Value& key) {
  switch (key.kind()) {
    case Value::Kind::string:
      return key.as_string();
    case Value::Kind::boolean:
      return key.as_bool() ? "true" : "false";
    case Value::Kind::none:
      return "null";
    case Value::Kind::integer:
      return std::to_string(key.as_int());
    case Value::Kind::floating: {
      const double f = key.as_float();
      if (std::isnan(f)) return "NaN";
      if (std::isinf(f)) return f > 0 ? "Infinity" : "-Infinity";
      return float_repr(f);
    }
    default:
      fail("keys must be str, int, float, bool or None, not " + type_name(key));
  }
}

void dump_json(std::string& out, const Value& v, const JsonStyle& style, int level) {
  const bool pretty = style.indent.has_value();
  const std::string item_separator = style.separators ? style.separators->first : (pretty ? "," : ", ");
  const std::string key_separator = style.separators ? style.separators->second : ": ";
  auto newline = [&](int depth) {
    check_result_size(out.size() + 1 + result_size(depth, style.indent->size()));
    out += '\n';
    for (int i = 0; i < depth; ++i) out += *style.indent;
  };
  switch (v.kind()) {
    case Value::Kind::none:
      out += "null";
      return;
    case Value::Kind::boolean:
      out += v.as_bool() ? "true" : "false";
      return;
    case Value::Kind::integer:
      out += std::to_string(v.as_int());
      return;
    case Value::Kind::floating: {
      const double f = v.as_float();
      if (std::isnan(f))
        out += "NaN";
      else if (std::isinf(f))
        out += f > 0 ? "Infinity" : "-Infinity";
      else
        out += float_repr(f);
      return;
    }
    case Value::Kind::string:
      out += text::json_quote(v.as_string(), style.ensure_ascii);
      return;
    case Value::Kind::list:
    case Value::Kind::tuple: {
      if (!v.view_name().empty()) fail("Object of type " + v.view_name() + " is not JSON serializable");
      const NestedValue nested("while encoding a JSON object");
      const ValueList& items = v.items();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_separator;
        if (pretty) newline(level + 1);
        dump_json(out, items[i], style, level + 1);
      }
      if (pretty) newline(level);
      out += ']';
      return;
    }
    case Value::Kind::dict: {
      const NestedValue nested("while encoding a JSON object");
      std::vector<const std::pair<Value, Value>*> entries;
      for (const auto& entry : v.as_dict().entries) entries.push_back(&entry);
      if (entries.empty()) {
        out += "{}";
        return;
      }
      if (style.sort_keys)
        std::stable_sort(entries.begin(), entries.end(), [](auto* x, auto* y) { return less(x->first, y->first); });
      out += '{';
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += item_separator;
        if (pretty) newline(level + 1);
        out += text::json_quote(json_key(entries[i]->first), style.ensure_ascii);
        out += key_separator;
        dump_json(out, entries[i]->second, style, level + 1);
      }
      if (pretty) newline(level);
      out += '}';
      return;
    }
    default:
      fail("Object of type " + type_name(v) + " is not JSON serializable");
  }
}

template <typename Json>
Value value_from_json(const Json& json) {
  switch (json.type()) {
    case nlohmann::json::value_t::null:
      return Value::none();
    case nlohmann::json::value_t::boolean:
      return Value::boolean(json.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::integer(json.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const auto u = json.template get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("integer " + std::to_string(u) + " does not fit 64 bits");
      return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value::floating(json.template get<double>());
    case nlohmann::json::value_t::string:
      return Value::string(json.template get<std::string>());
    case nlohmann::json::value_t::array: {
      const NestedValue nested("while converting JSON");
      ValueList items;
      for (const auto& item : json) items.push_back(value_from_json(item));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      const NestedValue nested("while converting JSON");
      auto dict = std::make_shared<Dict>();
      for (auto it = json.begin(); it != json.end(); ++it)
        dict->entries.emplace_back(Value::string(it.key()), value_from_json(it.value()));
      return Value::dict(std::move(dict));
    }
    default:
      fail("unsupported JSON value (binary data)");
  }
}

std::string strip_python_whitespace(std::string_view text) { return text::strip(text, std::nullopt, true, true); }

// printf-style formatting of one value: the `%` operator on strings and the `format` filter.
struct PercentSpec {
  std::string flags;
  int64_t width = 0;                 // Py_ssize_t in CPython; the result's size is checked
  std::optional<int64_t> precision;  // a C int in CPython
  char type = 's';
};

std::string pad_field(std::string body, const PercentSpec& spec, bool numeric) {
  const int64_t width = spec.width;
  const int64_t size = text::length(body);
  if (size >= width) return body;
  check_result_size(body.size() + static_cast<uint64_t>(width - size));
  const bool left = spec.flags.find('-') != std::string::npos;
  if (left) return body + std::string(width - size, ' ');
  if (numeric && spec.flags.find('0') != std::string::npos) {
    size_t sign = (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) ? 1 : 0;
    if (body.size() > sign + 1 && body[sign] == '0' &&
        (body[sign + 1] == 'x' || body[sign + 1] == 'X' || body[sign + 1] == 'o'))
      sign += 2;
    return body.substr(0, sign) + std::string(width - size, '0') + body.substr(sign);
  }
  return std::string(width - size, ' ') + body;
}

std::string sign_prefix(bool negative, const PercentSpec& spec) {
  if (negative) return "-";
  if (spec.flags.find('+') != std::string::npos) return "+";
  if (spec.flags.find(' ') != std::string::npos) return " ";
  return "";
}

// Zeros in front of `digits` up to `precision` digits (%.5d, %.3x).
std::string zero_extend(std::string digits, const std::optional<int64_t>& precision) {
  if (!precision || *precision <= static_cast<int64_t>(digits.size())) return digits;
  check_result_size(static_cast<uint64_t>(*precision));
  return std::string(*precision - digits.size(), '0') + digits;
}

std::string format_percent(const Value& v, const PercentSpec& spec) {
  switch (spec.type) {
    case 's': {
      std::string s = to_str(v);
      if (spec.precision) s = text::encode(text::decode(s).substr(0, *spec.precision));
      return pad_field(s, spec, false);
    }
    case 'r':
    case 'a': {
      std::string s = to_repr(v);
      if (spec.precision) s = text::encode(text::decode(s).substr(0, *spec.precision));
      return pad_field(s, spec, false);
    }
    case 'd':
    case 'i':
    case 'u': {
      if (!v.is_number())
        fail(std::string("%") + spec.type + " format: a real number is required, not " + type_name(v));
      const int64_t i = v.is_integral() ? v.as_int() : static_cast<int64_t>(std::trunc(v.as_float()));
      const std::string digits =
          zero_extend(std::to_string(i < 0 ? -static_cast<uint64_t>(i) : static_cast<uint64_t>(i)), spec.precision);
      return pad_field(sign_prefix(i < 0, spec) + digits, spec, true);
    }
    case 'x':
    case 'X':
    case 'o': {
      if (!v.is_integral()) fail(std::string("%") + spec.type + " format: an integer is required, not " + type_name(v));
      const int64_t i = v.as_int();
      const uint64_t magnitude = i < 0 ? -static_cast<uint64_t>(i) : static_cast<uint64_t>(i);
      char buffer[32];  // 22 octal digits at most
      std::snprintf(buffer, sizeof buffer,
                    spec.type == 'o'   ? "%llo"
                    : spec.type == 'x' ? "%llx"
                                       : "%llX",
                    static_cast<unsigned long long>(magnitude));
      const std::string digits = zero_extend(buffer, spec.precision);
      std::string prefix;
      if (spec.flags.find('#') != std::string::npos) prefix = spec.type == 'o' ? "0o" : spec.type == 'x' ? "0x" : "0X";
      return pad_field(sign_prefix(i < 0, spec) + prefix + digits, spec, true);
    }
    case 'e':
    case 'E':
    case 'f':
    case 'F':
    case 'g':
    case 'G': {
      if (!v.is_number()) fail(std::string("must be real number, not ") + type_name(v));
      const double f = v.as_float();
      const int64_t precision = spec.precision.value_or(6);
      check_result_size(static_cast<uint64_t>(precision) + 400);  // digits after the point, and up to 309 before
      std::string format = "%";
      for (char flag : spec.flags)
        if (flag == '#') format += flag;
      format += "." + std::to_string(precision) + spec.type;
      std::string body = format_number(format.c_str(), std::fabs(f));
      if (std::isnan(f)) body = (spec.type >= 'a') ? "nan" : "NAN";
      if (std::isinf(f)) body = (spec.type >= 'a') ? "inf" : "INF";
      return pad_field(sign_prefix(std::signbit(f) && !std::isnan(f), spec) + body, spec, std::isfinite(f));
    }
    case 'c': {
      if (v.is_string()) {
        if (text::length(v.as_string()) != 1) fail("%c requires int or char");
        return pad_field(v.as_string(), spec, false);
      }
      if (!v.is_integral()) fail("%c requires int or char");
      return pad_field(code_point_char(v.as_int()), spec, false);
    }
    default:
      fail(std::string("unsupported format character '") + spec.type + "'");
  }
}

Value percent_format(const Value& format, const Value& args) {
  const std::string& f = format.as_string();
  ValueList positional;
  const Value* mapping = args.kind() == Value::Kind::dict ? &args : nullptr;
  if (args.kind() == Value::Kind::tuple)
    positional = args.items();
  else
    positional.push_back(args);
  size_t next_arg = 0;
  bool used_mapping = false;
  auto take = [&](const std::optional<std::string>& key) -> Value {
    if (key) {
      if (!mapping) fail("format requires a mapping");
      used_mapping = true;
      const Value* found = mapping->as_dict().find(Value::string(*key));
      if (!found) fail("KeyError: " + text::repr(*key));
      return *found;
    }
    if (next_arg >= positional.size()) fail("not enough arguments for format string");
    return positional[next_arg++];
  };
  std::string out;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] != '%') {
      out += f[i];
      continue;
    }
    if (++i >= f.size()) fail("incomplete format");
    std::optional<std::string> key;
    if (f[i] == '(') {
      const size_t close = f.find(')', i);
      if (close == std::string::npos) fail("incomplete format key");
      key = f.substr(i + 1, close - i - 1);
      i = close + 1;
    }
    PercentSpec spec;
    while (i < f.size() && std::string_view("-+ #0").find(f[i]) != std::string_view::npos) spec.flags += f[i++];
    // Digits up to `limit` (CPython's Py_ssize_t for widths, int for precisions), else `too_big`.
    auto digits = [&](int64_t limit, const char* too_big) {
      int64_t n = 0;
      while (i < f.size() && f[i] >= '0' && f[i] <= '9') {
        const int digit = f[i++] - '0';
        if (n > (limit - digit) / 10) fail(too_big);
        n = n * 10 + digit;
      }
      return n;
    };
    auto star = [&]() {
      ++i;
      const Value n = take(std::nullopt);
      if (!n.is_integral()) fail("* wants int");
      return n.as_int();
    };
    if (i < f.size() && f[i] == '*') {
      spec.width = star();
      if (spec.width < 0) {  // CPython: a negative width left-aligns
        if (spec.width == std::numeric_limits<int64_t>::min()) check_result_size(kMaxResultBytes + 1);
        spec.flags += '-';
        spec.width = -spec.width;
      }
    } else {
      spec.width = digits(std::numeric_limits<int64_t>::max(), "width too big");
    }
    if (i < f.size() && f[i] == '.') {
      ++i;
      if (i < f.size() && f[i] == '*') {
        const int64_t precision = star();
        if (precision < std::numeric_limits<int>::min() || precision > std::numeric_limits<int>::max())
          fail("Python int too large to convert to C int");
        spec.precision = std::max<int64_t>(precision, 0);
      } else {
        spec.precision = digits(std::numeric_limits<int>::max(), "precision too big");
      }
    }
    while (i < f.size() && (f[i] == 'h' || f[i] == 'l' || f[i] == 'L')) ++i;
    if (i >= f.size()) fail("incomplete format");
    spec.type = f[i];
    if (spec.type == '%') {
      out += '%';
      continue;
    }
    out += format_percent(take(key), spec);
  }
  // Python skips this check when the argument supports item access (a dict, a list...).
  const bool subscriptable =
      args.kind() == Value::Kind::dict || args.kind() == Value::Kind::list || args.is_undefined();
  if (!used_mapping && !subscriptable && next_arg < positional.size())
    fail("not all arguments converted during string formatting");
  return Value::string(std::move(out));
}

}  // namespace

TemplateError::TemplateError(Kind kind, std::string message, SourcePos pos)
    : std::runtime_error(message), kind_(kind), message_(std::move(message)), pos_(pos) {}

TemplateError TemplateError::located(SourcePos pos) const {
  return pos_.line > 0 ? *this : TemplateError(kind_, message_, pos);
}

void fail(std::string message) { throw TemplateError(TemplateError::Kind::runtime, std::move(message)); }

void check_result_size(uint64_t bytes) {
  if (bytes > kMaxResultBytes)
    fail("result too large: " + std::to_string(bytes) + " bytes, more than the " +
         std::to_string(kMaxResultBytes >> 20) + " MiB one operation of a template may build");
}

void append_checked(std::string& out, std::string_view text) {
  check_result_size(static_cast<uint64_t>(out.size()) + text.size());
  out += text;
}

uint64_t result_size(uint64_t count, uint64_t unit_bytes) {
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(count, unit_bytes, &bytes))
    fail("result too large: " + std::to_string(count) + " times " + std::to_string(unit_bytes) +
         " bytes, more than the " + std::to_string(kMaxResultBytes >> 20) +
         " MiB one operation of a template may build");
  check_result_size(bytes);
  return bytes;
}

std::string format_number(const char* format, double number) {
  const int size = std::snprintf(nullptr, 0, format, number);
  if (size < 0) fail(std::string("cannot format ") + float_repr(number) + " with " + format);
  std::string out(static_cast<size_t>(size) + 1, '\0');
  std::snprintf(out.data(), out.size(), format, number);
  out.resize(static_cast<size_t>(size));
  return out;
}

namespace {
thread_local ObjectArena* active_arena = nullptr;
}  // namespace

ObjectArena::ObjectArena() : previous_(active_arena) { active_arena = this; }

ObjectArena::~ObjectArena() {
  active_arena = previous_;
  // Keep every object alive while any is being emptied: releasing one may free others.
  std::vector<std::shared_ptr<Object>> alive;
  for (const auto& weak : objects_)
    if (auto object = weak.lock()) alive.push_back(std::move(object));
  for (const auto& object : alive) object->release();
}

void ObjectArena::track(const std::shared_ptr<Object>& object) {
  if (active_arena) active_arena->objects_.push_back(object);
}

Sequence::~Sequence() = default;
void Sequence::release() { items.clear(); }
Dict::~Dict() = default;
void Dict::release() { entries.clear(); }
Iterator::~Iterator() = default;
void Iterator::release() {
  produce = nullptr;
  items.clear();
}
Namespace::~Namespace() = default;
void Namespace::release() { attributes.release(); }
Callable::~Callable() = default;
void Callable::release() { call = nullptr; }
Loop::~Loop() = default;
void Loop::release() {
  items.clear();
  last_changed.reset();
  recurse = nullptr;
}

const Value* Dict::find(const Value& key) const {
  for (const auto& [k, v] : entries)
    if (equal(k, key)) return &v;
  return nullptr;
}

void Dict::set(Value key, Value value) {
  for (auto& [k, v] : entries) {
    if (equal(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

Value Value::undefined(std::string message, bool unsafe) {
  Value v;
  v.text_ = std::move(message);
  v.bool_ = unsafe;
  return v;
}

Value Value::none() {
  Value v;
  v.kind_ = Kind::none;
  return v;
}

Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::boolean;
  v.bool_ = b;
  v.integer_ = b ? 1 : 0;
  return v;
}

Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::integer;
  v.integer_ = i;
  return v;
}

Value Value::floating(double f) {
  Value v;
  v.kind_ = Kind::floating;
  v.float_ = f;
  return v;
}

Value Value::string(std::string s, bool markup) {
  Value v;
  v.kind_ = Kind::string;
  v.text_ = std::move(s);
  v.bool_ = markup;
  return v;
}

Value Value::list(ValueList items) {
  Value v;
  v.kind_ = Kind::list;
  auto sequence = std::make_shared<Sequence>();
  sequence->items = std::move(items);
  v.object_ = std::move(sequence);
  ObjectArena::track(v.object_);
  return v;
}

Value Value::view(std::string name, ValueList items, std::string repr) {
  Value v = list(std::move(items));
  auto& sequence = static_cast<Sequence&>(*v.object_);
  sequence.view = std::move(name);
  sequence.view_repr = std::move(repr);
  return v;
}

const std::string& Value::view_name() const {
  static const std::string none;
  return kind_ == Kind::list ? static_cast<const Sequence&>(*object_).view : none;
}

Value Value::tuple(ValueList items) {
  Value v = list(std::move(items));
  v.kind_ = Kind::tuple;
  return v;
}

Value Value::dict(std::shared_ptr<Dict> dict) {
  Value v;
  v.kind_ = Kind::dict;
  v.object_ = dict ? std::move(dict) : std::make_shared<Dict>();
  ObjectArena::track(v.object_);
  return v;
}

Value Value::iterator(ValueList items) {
  Value v;
  v.kind_ = Kind::iterator;
  auto it = std::make_shared<Iterator>();
  it->items = std::move(items);
  v.object_ = std::move(it);
  ObjectArena::track(v.object_);
  return v;
}

Value Value::generator(std::function<ValueList()> produce) {
  Value v = iterator({});
  v.as_iterator().produce = std::move(produce);
  return v;
}

ValueList& Iterator::produced() {
  if (produce) {
    const std::function<ValueList()> run = std::move(produce);
    produce = nullptr;
    items = run();
  }
  return items;
}

Value Value::ns(std::shared_ptr<Namespace> ns) {
  Value v;
  v.kind_ = Kind::ns;
  v.object_ = std::move(ns);
  ObjectArena::track(v.object_);
  return v;
}

Value Value::callable(std::string name, std::function<Value(CallArgs&)> call) {
  Value v;
  v.kind_ = Kind::callable;
  auto c = std::make_shared<Callable>();
  c->name = std::move(name);
  c->call = std::move(call);
  v.object_ = std::move(c);
  ObjectArena::track(v.object_);
  return v;
}

Value Value::loop(std::shared_ptr<Loop> loop) {
  Value v;
  v.kind_ = Kind::loop;
  v.object_ = std::move(loop);
  ObjectArena::track(v.object_);
  return v;
}

Value Value::from_json(const nlohmann::json& json) { return value_from_json(json); }
Value Value::from_json(const nlohmann::ordered_json& json) { return value_from_json(json); }

double Value::as_float() const { return kind_ == Kind::floating ? float_ : static_cast<double>(integer_); }

void fail_undefined(const Value& value) {
  const std::string& message = value.undefined_message();
  fail(message.empty() ? "undefined value used" : message);
}

std::string type_name(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::undefined:
      return "Undefined";
    case Value::Kind::none:
      return "NoneType";
    case Value::Kind::boolean:
      return "bool";
    case Value::Kind::integer:
      return "int";
    case Value::Kind::floating:
      return "float";
    case Value::Kind::string:
      return value.is_markup() ? "Markup" : "str";
    case Value::Kind::list:
      return value.view_name().empty() ? "list" : value.view_name();
    case Value::Kind::tuple:
      return "tuple";
    case Value::Kind::dict:
      return "dict";
    case Value::Kind::iterator:
      return "generator";
    case Value::Kind::ns:
      return "Namespace";
    case Value::Kind::callable:
      return "function";
    case Value::Kind::loop:
      return "LoopContext";
  }
  return "object";
}

std::string object_type_repr(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::none:
      return "None";
    case Value::Kind::ns:
      return "jinja2.utils.Namespace object";
    case Value::Kind::loop:
      return "jinja2.runtime.LoopContext object";
    case Value::Kind::string:
      return value.is_markup() ? "markupsafe.Markup object" : "str object";
    default:
      return type_name(value) + " object";
  }
}

bool truthy(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::undefined:
    case Value::Kind::none:
      return false;
    case Value::Kind::boolean:
      return value.as_bool();
    case Value::Kind::integer:
      return value.as_int() != 0;
    case Value::Kind::floating:
      return value.as_float() != 0;
    case Value::Kind::string:
      return !value.as_string().empty();
    case Value::Kind::list:
    case Value::Kind::tuple:
      return !value.items().empty();
    case Value::Kind::dict:
      return !value.as_dict().entries.empty();
    case Value::Kind::loop:
      return !value.as_loop().items.empty();
    default:
      return true;
  }
}

std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, f, std::chars_format::scientific);
  std::string s(buffer, result.ptr);
  std::string out;
  if (s[0] == '-') {
    out = "-";
    s.erase(0, 1);
  }
  const size_t e = s.find('e');
  const int exponent = std::atoi(s.c_str() + e + 1);
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (s[i] != '.') digits += s[i];
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int point = exponent + 1;  // the value is 0.DIGITS × 10^point
  const auto n = static_cast<int>(digits.size());
  if (point > -4 && point <= 16) {
    if (point <= 0)
      out += "0." + std::string(-point, '0') + digits;
    else if (point >= n)
      out += digits + std::string(point - n, '0') + ".0";
    else
      out += digits.substr(0, point) + "." + digits.substr(point);
    return out;
  }
  out += digits[0];
  if (n > 1) out += "." + digits.substr(1);
  const int shown = point - 1;
  char exp[16];
  std::snprintf(exp, sizeof exp, "e%c%02d", shown < 0 ? '-' : '+', std::abs(shown));
  return out + exp;
}

std::string to_str(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::undefined:
      return "";
    case Value::Kind::string:
      return value.as_string();
    default:
      return to_repr(value);
  }
}

std::string to_repr(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::undefined:
      return "Undefined";
    case Value::Kind::none:
      return "None";
    case Value::Kind::boolean:
      return value.as_bool() ? "True" : "False";
    case Value::Kind::integer:
      return std::to_string(value.as_int());
    case Value::Kind::floating:
      return float_repr(value.as_float());
    case Value::Kind::string:
      return value.is_markup() ? "Markup(" + text::repr(value.as_string()) + ")" : text::repr(value.as_string());
    case Value::Kind::list: {
      const auto& sequence = static_cast<const Sequence&>(*value.identity());
      if (!sequence.view_repr.empty()) return sequence.view_repr;
      const ReprEntry entry(&sequence);
      if (!entry.entered) return sequence.view.empty() ? "[...]" : "...";
      const std::string items = "[" + join_repr(value.items()) + "]";
      return sequence.view.empty() ? items : sequence.view + "(" + items + ")";
    }
    case Value::Kind::tuple: {
      const ReprEntry entry(value.identity());
      if (!entry.entered) return "(...)";
      return "(" + join_repr(value.items()) + (value.items().size() == 1 ? ",)" : ")");
    }
    case Value::Kind::dict:
      return dict_repr(value.as_dict());
    case Value::Kind::iterator:
      return "<generator object>";
    case Value::Kind::ns:
      return "<Namespace " + dict_repr(value.as_ns().attributes) + ">";
    case Value::Kind::callable:
      return "<function " + value.as_callable().name + ">";
    case Value::Kind::loop: {
      const Loop& loop = value.as_loop();
      return "<LoopContext " + std::to_string(loop.index0 + 1) + "/" + std::to_string(loop.items.size()) + ">";
    }
  }
  return "";
}

bool equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.as_int() == b.as_int();
    return a.as_float() == b.as_float();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::none:
      return true;
    case K::string:
      return a.as_string() == b.as_string();
    case K::list:
    case K::tuple: {
      if (a.identity() == b.identity()) return true;  // Python compares items by identity first
      const NestedValue nested("in comparison");
      const ValueList &x = a.items(), &y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equal(x[i], y[i])) return false;
      return true;
    }
    case K::dict: {
      if (a.identity() == b.identity()) return true;
      const NestedValue nested("in comparison");
      const Dict &x = a.as_dict(), &y = b.as_dict();
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [key, v] : x.entries) {
        const Value* other = y.find(key);
        if (!other || !equal(v, *other)) return false;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

bool less(const Value& a, const Value& b) { return ordered(Order::lt, a, b); }

Value binary(BinaryOp op, const Value& a, const Value& b) {
  if (op == BinaryOp::mod && a.is_string()) return percent_format(a, b);  // str % x runs before x's own checks
  check_defined(a, b);
  const bool numbers = a.is_number() && b.is_number();
  const bool integers = a.is_integral() && b.is_integral();
  switch (op) {
    case BinaryOp::add: {
      if (integers) {
        int64_t r = 0;
        const bool overflow = __builtin_add_overflow(a.as_int(), b.as_int(), &r);
        return Value::integer(checked(overflow, r));
      }
      if (numbers) return Value::floating(a.as_float() + b.as_float());
      if (a.is_string() && b.is_string()) {
        check_result_size(static_cast<uint64_t>(a.as_string().size()) + b.as_string().size());
        // markupsafe.Markup escapes the plain operand it is joined with.
        if (a.is_markup() && !b.is_markup())
          return Value::string(a.as_string() + text::escape_html(b.as_string()), true);
        if (b.is_markup() && !a.is_markup())
          return Value::string(text::escape_html(a.as_string()) + b.as_string(), true);
        return Value::string(a.as_string() + b.as_string(), a.is_markup());
      }
      if (a.is_sequence() && a.kind() == b.kind()) {
        result_size(a.items().size() + b.items().size(), sizeof(Value));
        ValueList items = a.items();
        items.insert(items.end(), b.items().begin(), b.items().end());
        return a.kind() == Value::Kind::list ? Value::list(std::move(items)) : Value::tuple(std::move(items));
      }
      if (a.is_string()) fail("can only concatenate str (not \"" + type_name(b) + "\") to str");
      if (a.is_sequence())
        fail("can only concatenate " + type_name(a) + " (not \"" + type_name(b) + "\") to " + type_name(a));
      fail_unsupported("+", a, b);
    }
    case BinaryOp::sub: {
      if (integers) {
        int64_t r = 0;
        const bool overflow = __builtin_sub_overflow(a.as_int(), b.as_int(), &r);
        return Value::integer(checked(overflow, r));
      }
      if (numbers) return Value::floating(a.as_float() - b.as_float());
      fail_unsupported("-", a, b);
    }
    case BinaryOp::mul: {
      if (integers) {
        int64_t r = 0;
        const bool overflow = __builtin_mul_overflow(a.as_int(), b.as_int(), &r);
        return Value::integer(checked(overflow, r));
      }
      if (numbers) return Value::floating(a.as_float() * b.as_float());
      if (is_repeatable(a) && b.is_integral()) return repeat(a, b.as_int());
      if (a.is_integral() && is_repeatable(b)) return repeat(b, a.as_int());
      if (is_repeatable(a) || is_repeatable(b))
        fail("can't multiply sequence by non-int of type '" + type_name(is_repeatable(a) ? b : a) + "'");
      fail_unsupported("*", a, b);
    }
    case BinaryOp::div: {
      if (!numbers) fail_unsupported("/", a, b);
      if (b.as_float() == 0) fail(integers ? "division by zero" : "float division by zero");
      return Value::floating(a.as_float() / b.as_float());
    }
    case BinaryOp::floordiv: {
      if (integers) return Value::integer(int_floordiv(a.as_int(), b.as_int()));
      if (numbers) return Value::floating(float_divmod(a.as_float(), b.as_float()).first);
      fail_unsupported("//", a, b);
    }
    case BinaryOp::mod: {
      if (integers) return Value::integer(int_mod(a.as_int(), b.as_int()));
      if (numbers) {
        if (b.as_float() == 0) fail("float modulo");
        return Value::floating(float_divmod(a.as_float(), b.as_float()).second);
      }
      fail_unsupported("%", a, b);
    }
    case BinaryOp::pow: {
      if (integers && b.as_int() >= 0) {
        int64_t result = 1, base = a.as_int();
        for (int64_t e = b.as_int(); e > 0; e >>= 1) {
          if (e & 1) checked(__builtin_mul_overflow(result, base, &result), 0);
          if (e > 1) checked(__builtin_mul_overflow(base, base, &base), 0);
        }
        return Value::integer(result);
      }
      if (numbers) {
        if (a.as_float() == 0 && b.as_float() < 0) fail("0.0 cannot be raised to a negative power");
        return Value::floating(std::pow(a.as_float(), b.as_float()));
      }
      fail_unsupported("** or pow()", a, b);
    }
  }
  fail("unknown operator");
}

Value negate(const Value& value) {
  if (value.is_undefined()) fail_undefined(value);
  if (value.is_integral()) {
    if (value.as_int() == std::numeric_limits<int64_t>::min()) checked(true, 0);
    return Value::integer(-value.as_int());
  }
  if (value.kind() == Value::Kind::floating) return Value::floating(-value.as_float());
  fail("bad operand type for unary -: '" + type_name(value) + "'");
}

Value positive(const Value& value) {
  if (value.is_undefined()) fail_undefined(value);
  if (value.is_integral()) return Value::integer(value.as_int());
  if (value.kind() == Value::Kind::floating) return value;
  fail("bad operand type for unary +: '" + type_name(value) + "'");
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::undefined:
      return false;
    case Value::Kind::string:
      if (!item.is_string()) fail("'in <string>' requires string as left operand, not " + type_name(item));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::list:
    case Value::Kind::tuple:
      for (const Value& v : container.items())
        if (equal(v, item)) return true;
      return false;
    case Value::Kind::dict:
      if (item.kind() == Value::Kind::list || item.kind() == Value::Kind::dict || item.kind() == Value::Kind::ns)
        fail("unhashable type: '" + type_name(item) + "'");
      return container.as_dict().find(item) != nullptr;
    case Value::Kind::iterator: {
      Iterator& it = container.as_iterator();
      const ValueList& items = it.produced();
      while (it.next < items.size())
        if (equal(items[it.next++], item)) return true;
      return false;
    }
    default:
      fail("argument of type '" + type_name(container) + "' is not iterable");
  }
}

ValueList iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::undefined:
      return {};
    case Value::Kind::list:
    case Value::Kind::tuple:
      return value.items();
    case Value::Kind::dict: {
      ValueList keys;
      for (const auto& entry : value.as_dict().entries) keys.push_back(entry.first);
      return keys;
    }
    case Value::Kind::string: {
      ValueList chars;
      for (char32_t c : text::decode(value.as_string())) {
        std::string s;
        text::append_utf8(s, c);
        chars.push_back(Value::string(std::move(s)));  // a Markup iterates as plain str
      }
      return chars;
    }
    case Value::Kind::iterator: {
      Iterator& it = value.as_iterator();
      const ValueList& items = it.produced();
      ValueList rest(items.begin() + static_cast<std::ptrdiff_t>(it.next), items.end());
      it.next = items.size();
      return rest;
    }
    case Value::Kind::loop:
      return value.as_loop().items;
    default:
      fail("'" + type_name(value) + "' object is not iterable");
  }
}

int64_t length(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::undefined:
      return 0;
    case Value::Kind::string:
      return text::length(value.as_string());
    case Value::Kind::list:
    case Value::Kind::tuple:
      return static_cast<int64_t>(value.items().size());
    case Value::Kind::dict:
      return static_cast<int64_t>(value.as_dict().entries.size());
    case Value::Kind::loop:
      return static_cast<int64_t>(value.as_loop().items.size());
    default:
      fail("object of type '" + type_name(value) + "' has no len()");
  }
}

Value slice(const Value& value, const Value& start, const Value& stop, const Value& step) {
  if (value.is_undefined()) fail_undefined(value);
  auto index = [](const Value& v) -> std::optional<int64_t> {
    if (v.is_none() || (v.is_undefined() && v.undefined_message().empty())) return std::nullopt;
    if (!v.is_integral()) fail("slice indices must be integers or None or have an __index__ method");
    return v.as_int();
  };
  const std::optional<int64_t> first = index(start), last = index(stop), by = index(step);
  const int64_t stride = by.value_or(1);
  if (stride == 0) fail("slice step cannot be zero");
  auto select = [&](int64_t size) {
    auto adjust = [&](std::optional<int64_t> i, int64_t fallback) {
      if (!i) return fallback;
      int64_t v = *i;
      if (v < 0) {
        v += size;
        if (v < 0) v = stride < 0 ? -1 : 0;
      } else if (v >= size) {
        v = stride < 0 ? size - 1 : size;
      }
      return v;
    };
    const int64_t begin = adjust(first, stride < 0 ? size - 1 : 0);
    const int64_t end = adjust(last, stride < 0 ? -1 : size);
    std::vector<int64_t> picked;
    for (int64_t i = begin; stride > 0 ? i < end : i > end; i += stride) picked.push_back(i);
    return picked;
  };
  if (value.is_string()) {
    const std::u32string cps = text::decode(value.as_string());
    std::u32string out;
    for (int64_t i : select(static_cast<int64_t>(cps.size()))) out += cps[i];
    return Value::string(text::encode(out), value.is_markup());
  }
  if (value.is_sequence()) {
    ValueList out;
    for (int64_t i : select(static_cast<int64_t>(value.items().size()))) out.push_back(value.items()[i]);
    return value.kind() == Value::Kind::list ? Value::list(std::move(out)) : Value::tuple(std::move(out));
  }
  fail("'" + type_name(value) + "' object is not subscriptable");
}

std::string to_json(const Value& value, const JsonStyle& style) {
  std::string out;
  dump_json(out, value, style, 0);
  return out;
}

std::optional<int64_t> parse_int(std::string_view input, int base) {
  std::string s = strip_python_whitespace(input);
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  auto prefix_base = [&](char c) {
    return c == 'x' || c == 'X' ? 16 : c == 'o' || c == 'O' ? 8 : c == 'b' || c == 'B' ? 2 : 0;
  };
  if (i + 1 < s.size() && s[i] == '0' && prefix_base(s[i + 1]) && (base == 0 || base == prefix_base(s[i + 1]))) {
    base = prefix_base(s[i + 1]);
    i += 2;
    if (i < s.size() && s[i] == '_') ++i;
  } else if (base == 0) {
    base = 10;
  }
  if (i >= s.size()) return std::nullopt;
  uint64_t magnitude = 0;
  bool previous_digit = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (!previous_digit) return std::nullopt;
      previous_digit = false;
      continue;
    }
    int digit = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'z' ? c - 'a' + 10
                : c >= 'A' && c <= 'Z' ? c - 'A' + 10
                                       : 99;
    if (digit >= base) return std::nullopt;
    if (magnitude > (std::numeric_limits<uint64_t>::max() - digit) / base) return std::nullopt;
    magnitude = magnitude * base + digit;
    previous_digit = true;
  }
  if (!previous_digit) return std::nullopt;
  if (magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0)) return std::nullopt;
  return negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
}

std::optional<double> parse_float(std::string_view input) {
  std::string s = strip_python_whitespace(input);
  std::string lowered = text::lower(s);
  std::string body = lowered;
  double sign = 1;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    if (body[0] == '-') sign = -1;
    body.erase(0, 1);
  }
  if (body == "inf" || body == "infinity") return sign * std::numeric_limits<double>::infinity();
  if (body == "nan") return std::numeric_limits<double>::quiet_NaN();
  std::string digits;
  bool previous_digit = false, any_digit = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (!previous_digit || i + 1 >= s.size() || s[i + 1] < '0' || s[i + 1] > '9') return std::nullopt;
      continue;
    }
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) return std::nullopt;
    previous_digit = c >= '0' && c <= '9';
    any_digit = any_digit || previous_digit;
    digits += c;
  }
  if (!any_digit) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(digits.c_str(), &end);
  if (end != digits.c_str() + digits.size()) return std::nullopt;
  return value;
}

}  // namespace fe::jinja
