// tokenizer/jinja_builtins.cpp — filters, tests, globals and Python methods (see jinja_builtins.h).
// Each filter follows jinja2/filters.py of jinja2 3.1 (Debian's python3-jinja2), each method the
// CPython str/list/dict method of that name.
#include "tokenizer/jinja_builtins.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "tokenizer/jinja_text.h"

namespace fe::jinja {
namespace {

using Args = std::vector<std::optional<Value>>;

// Binds call arguments to named parameters as a Python signature does.
Args bind(const std::string& function, CallArgs& call, std::initializer_list<const char*> params, size_t required = 0) {
  const std::vector<const char*> names(params);
  if (call.positional.size() > names.size())
    fail(function + "() takes at most " + std::to_string(names.size()) + " argument(s) (" +
         std::to_string(call.positional.size()) + " given)");
  Args bound(names.size());
  for (size_t i = 0; i < call.positional.size(); ++i) bound[i] = call.positional[i];
  for (auto& [key, value] : call.keyword) {
    const auto it = std::find(names.begin(), names.end(), std::string_view(key));
    if (it == names.end()) fail(function + "() got an unexpected keyword argument '" + key + "'");
    auto& slot = bound[it - names.begin()];
    if (slot) fail(function + "() got multiple values for argument '" + key + "'");
    slot = value;
  }
  for (size_t i = 0; i < required; ++i)
    if (!bound[i]) fail(function + "() missing required argument '" + names[i] + "'");
  return bound;
}

void no_arguments(const std::string& function, const CallArgs& call) {
  if (!call.positional.empty() || !call.keyword.empty()) fail(function + "() takes no arguments");
}

bool is_set(const std::optional<Value>& v) { return v && !v->is_none(); }

int64_t int_arg(const std::optional<Value>& v, const std::string& what, int64_t fallback) {
  if (!is_set(v)) return fallback;
  if (v->is_undefined()) fail_undefined(*v);
  if (!v->is_integral()) fail("'" + type_name(*v) + "' object cannot be interpreted as an integer (" + what + ")");
  return v->as_int();
}

std::string str_arg(const std::optional<Value>& v, const std::string& what) {
  if (!v) return "";
  if (v->is_undefined()) fail_undefined(*v);
  if (!v->is_string()) fail(what + " must be str, not " + type_name(*v));
  return v->as_string();
}

std::optional<std::string> optional_str_arg(const std::optional<Value>& v, const std::string& what) {
  if (!is_set(v)) return std::nullopt;
  return str_arg(v, what);
}

bool bool_arg(const std::optional<Value>& v, bool fallback) { return v ? truthy(*v) : fallback; }

Value str_value(std::string s) { return Value::string(std::move(s)); }

Value list_of_strings(const std::vector<std::string>& parts) {
  ValueList items;
  for (const std::string& p : parts) items.push_back(str_value(p));
  return Value::list(std::move(items));
}

// text::pad and text::replace, after checking the size of what they will build.
std::string padded(std::string_view s, int64_t width, char32_t fill, char align) {
  const int64_t size = text::length(s);
  if (width > size) {
    std::string fill_utf8;
    text::append_utf8(fill_utf8, fill);
    check_result_size(s.size() + result_size(static_cast<uint64_t>(width - size), fill_utf8.size()));
  }
  return text::pad(s, width, fill, align);
}

std::string replaced(std::string_view s, std::string_view old, std::string_view replacement, int64_t count) {
  if (replacement.size() > old.size()) {
    uint64_t matches = 0;
    const uint64_t most = count < 0 ? std::numeric_limits<uint64_t>::max() : static_cast<uint64_t>(count);
    if (old.empty()) {
      matches = static_cast<uint64_t>(text::length(s)) + 1;
    } else {
      for (size_t at = s.find(old); at != std::string_view::npos && matches < most; at = s.find(old, at + old.size()))
        ++matches;
    }
    check_result_size(s.size() + result_size(std::min(matches, most), replacement.size() - old.size()));
  }
  return text::replace(s, old, replacement, count);
}

Value unsafe_attribute(const Value& object, const std::string& name) {
  return Value::undefined("access to attribute '" + name + "' of '" + type_name(object) + "' object is unsafe.", true);
}

Value missing_attribute(const Value& object, const std::string& name) {
  return Value::undefined("'" + object_type_repr(object) + "' has no attribute '" + name + "'");
}

Value missing_element(const Value& object, const Value& key) {
  return Value::undefined(object_type_repr(object) + " has no element " + to_repr(key));
}

// --- make_attrgetter: "a.b.0" looked up item by item ------------------------------------------

std::vector<Value> attribute_parts(const Value& attribute) {
  if (attribute.is_none()) return {};
  if (!attribute.is_string()) return {attribute};
  std::vector<Value> parts;
  for (const std::string& part : text::split(attribute.as_string(), std::string("."), -1)) {
    const bool digits =
        !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    parts.push_back(digits ? Value::integer(*parse_int(part, 10)) : str_value(part));
  }
  return parts;
}

Value lowered(const Value& v) { return v.is_string() ? str_value(text::lower(v.as_string())) : v; }

struct AttrGetter {
  std::vector<Value> parts;
  bool ignore_case = false;
  std::optional<Value> fallback;  // `default=`: replaces an undefined result at each step

  Value operator()(Value item) const {
    for (const Value& part : parts) {
      item = get_item(item, part);
      if (fallback && item.is_undefined()) item = *fallback;
    }
    return ignore_case ? lowered(item) : item;
  }
};

AttrGetter attr_getter(const std::optional<Value>& attribute, bool ignore_case, std::optional<Value> fallback = {}) {
  return {attribute ? attribute_parts(*attribute) : std::vector<Value>{}, ignore_case,
          fallback && !fallback->is_none() ? fallback : std::nullopt};
}

// make_multi_attrgetter: "age,name" gives a list of values to sort by.
std::function<Value(const Value&)> multi_attr_getter(const std::optional<Value>& attribute, bool ignore_case) {
  if (!attribute || attribute->is_none() || !attribute->is_string()) {
    AttrGetter single = attr_getter(attribute, ignore_case);
    return [single](const Value& item) { return Value::list({single(item)}); };
  }
  std::vector<AttrGetter> getters;
  for (const std::string& part : text::split(attribute->as_string(), std::string(","), -1))
    getters.push_back(attr_getter(str_value(part), ignore_case));
  return [getters](const Value& item) {
    ValueList keys;
    for (const AttrGetter& g : getters) keys.push_back(g(item));
    return Value::list(std::move(keys));
  };
}

ValueList sorted(ValueList items, const std::function<Value(const Value&)>& key, bool reverse) {
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : items) keyed.emplace_back(key(item), std::move(item));
  std::stable_sort(keyed.begin(), keyed.end(), [reverse](const auto& a, const auto& b) {
    return reverse ? less(b.first, a.first) : less(a.first, b.first);
  });
  ValueList out;
  for (auto& [k, v] : keyed) out.push_back(std::move(v));
  return out;
}

void check_hashable(const Value& v) {
  if (v.kind() == Value::Kind::list || v.kind() == Value::Kind::dict || v.kind() == Value::Kind::ns)
    fail("unhashable type: '" + type_name(v) + "'");
  if (v.kind() == Value::Kind::tuple)
    for (const Value& item : v.items()) check_hashable(item);
}

// --- str.format ----------------------------------------------------------------------------

struct FormatSpec {
  char32_t fill = ' ';
  char align = 0;
  char sign = 0;
  bool alternate = false;
  bool zero = false;
  int64_t width = 0;
  char grouping = 0;
  std::optional<int64_t> precision;
  char type = 0;
};

FormatSpec parse_format_spec(const std::string& spec_text) {
  FormatSpec spec;
  const std::u32string s = text::decode(spec_text);
  size_t i = 0;
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (s.size() >= 2 && is_align(s[1])) {
    spec.fill = s[0];
    spec.align = static_cast<char>(s[1]);
    i = 2;
  } else if (!s.empty() && is_align(s[0])) {
    spec.align = static_cast<char>(s[0]);
    i = 1;
  }
  if (i < s.size() && (s[i] == '+' || s[i] == '-' || s[i] == ' ')) spec.sign = static_cast<char>(s[i++]);
  if (i < s.size() && s[i] == '#') spec.alternate = true, ++i;
  if (i < s.size() && s[i] == '0') spec.zero = true, ++i;
  // CPython's get_integer: a Py_ssize_t, else this ValueError.
  auto digits = [&]() {
    int64_t n = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      const int digit = static_cast<int>(s[i++] - '0');
      if (n > (std::numeric_limits<int64_t>::max() - digit) / 10) fail("Too many decimal digits in format string");
      n = n * 10 + digit;
    }
    return n;
  };
  spec.width = digits();
  if (i < s.size() && (s[i] == ',' || s[i] == '_')) spec.grouping = static_cast<char>(s[i++]);
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (i >= s.size() || s[i] < '0' || s[i] > '9') fail("Format specifier missing precision");
    spec.precision = digits();
  }
  if (i < s.size()) spec.type = static_cast<char>(s[i++]);
  if (i < s.size()) fail("Invalid format specifier");
  return spec;
}

std::string group_digits(const std::string& digits, char separator) {
  if (!separator) return digits;
  std::string out;
  const size_t n = digits.size();
  for (size_t i = 0; i < n; ++i) {
    out += digits[i];
    if ((n - i - 1) % 3 == 0 && i + 1 < n) out += separator;
  }
  return out;
}

std::string align_field(const std::string& sign, const std::string& body, const FormatSpec& spec, char default_align) {
  char align = spec.align ? spec.align : default_align;
  char32_t fill = spec.fill;
  if (!spec.align && spec.zero && default_align == '>') {
    align = '=';
    fill = '0';
  }
  const int64_t size = text::length(sign) + text::length(body);
  if (size >= spec.width) return sign + body;
  const int64_t pad = spec.width - size;
  std::string fill_utf8;
  text::append_utf8(fill_utf8, fill);
  check_result_size(sign.size() + body.size() + result_size(static_cast<uint64_t>(pad), fill_utf8.size()));
  auto fills = [&](int64_t n) {
    std::string f;
    f.reserve(static_cast<size_t>(n) * fill_utf8.size());
    for (int64_t k = 0; k < n; ++k) f += fill_utf8;
    return f;
  };
  switch (align) {
    case '<':
      return sign + body + fills(pad);
    case '^':
      return fills(pad / 2) + sign + body + fills(pad - pad / 2);
    case '=':
      return sign + fills(pad) + body;
    default:
      return fills(pad) + sign + body;
  }
}

std::string format_float_spec(double f, const FormatSpec& spec) {
  char type = spec.type;
  std::string body;
  if (std::isnan(f) || std::isinf(f)) {
    body = std::isnan(f) ? "nan" : "inf";
    if (type == 'E' || type == 'F' || type == 'G') body = text::upper(body);
  } else if (type == 0 && !spec.precision) {
    body = float_repr(std::fabs(f));
  } else {
    const int64_t precision = spec.precision.value_or(6);
    if (precision > std::numeric_limits<int>::max()) fail("precision too big");
    check_result_size(static_cast<uint64_t>(precision) + 400);  // digits after the point, and up to 309 before
    double shown = std::fabs(f);
    std::string suffix;
    char c = type ? type : 'g';
    if (type == '%') {
      shown *= 100;
      c = 'f';
      suffix = "%";
    }
    std::string format = std::string("%") + (spec.alternate ? "#" : "") + "." + std::to_string(precision) + c;
    body = format_number(format.c_str(), shown);
    if (type == 0 && body.find_first_of(".e") == std::string::npos) body += ".0";
    body += suffix;
  }
  if (spec.grouping) {
    const size_t end = body.find_first_not_of("0123456789");
    body = group_digits(body.substr(0, end), spec.grouping) + (end == std::string::npos ? "" : body.substr(end));
  }
  const bool negative = std::signbit(f) && !std::isnan(f);
  const std::string sign = negative ? "-" : spec.sign == '+' ? "+" : spec.sign == ' ' ? " " : "";
  return align_field(sign, body, spec, '>');
}

std::string format_value(const Value& v, const std::string& spec_text) {
  if (spec_text.empty()) return to_str(v);
  const FormatSpec spec = parse_format_spec(spec_text);
  if (v.is_string()) {
    if (spec.type && spec.type != 's')
      fail(std::string("Unknown format code '") + spec.type + "' for object of type 'str'");
    std::string s = v.as_string();
    if (spec.precision) s = text::encode(text::decode(s).substr(0, *spec.precision));
    return align_field("", s, spec, '<');
  }
  if (v.is_integral()) {
    if (std::string_view("eEfFgG%").find(spec.type) != std::string_view::npos && spec.type)
      return format_float_spec(v.as_float(), spec);
    const int64_t i = v.as_int();
    const uint64_t magnitude = i < 0 ? -static_cast<uint64_t>(i) : static_cast<uint64_t>(i);
    std::string digits, prefix;
    char buffer[80];
    switch (spec.type) {
      case 0:
      case 'd':
      case 'n':
        digits = std::to_string(magnitude);
        break;
      case 'x':
      case 'X':
      case 'o':
        std::snprintf(buffer, sizeof buffer,
                      spec.type == 'o'   ? "%llo"
                      : spec.type == 'x' ? "%llx"
                                         : "%llX",
                      static_cast<unsigned long long>(magnitude));
        digits = buffer;
        if (spec.alternate) prefix = spec.type == 'o' ? "0o" : spec.type == 'x' ? "0x" : "0X";
        break;
      case 'b':
        for (uint64_t m = magnitude; m; m >>= 1) digits.insert(digits.begin(), static_cast<char>('0' + (m & 1)));
        if (digits.empty()) digits = "0";
        if (spec.alternate) prefix = "0b";
        break;
      case 'c':
        return align_field("", code_point_char(i), spec, '<');
      default:
        fail(std::string("Unknown format code '") + spec.type + "' for object of type 'int'");
    }
    const std::string sign = i < 0 ? "-" : spec.sign == '+' ? "+" : spec.sign == ' ' ? " " : "";
    return align_field(sign + prefix, group_digits(digits, spec.grouping), spec, '>');
  }
  if (v.kind() == Value::Kind::floating) {
    if (std::string_view("eEfFgG%").find(spec.type) == std::string_view::npos && spec.type)
      fail(std::string("Unknown format code '") + spec.type + "' for object of type 'float'");
    return format_float_spec(v.as_float(), spec);
  }
  fail("unsupported format string passed to " + type_name(v) + ".__format__");
}

// string.Formatter's field syntax: {name.attr[key]!conversion:spec}, with {{ and }} as braces.
std::string str_format(const std::string& format, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  bool manual = false, automatic = false;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      fail("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t depth = 1, end = i + 1;
    for (; end < format.size() && depth; ++end) {
      if (format[end] == '{') ++depth;
      if (format[end] == '}') --depth;
    }
    if (depth) fail("expected '}' before end of string");
    const std::string field = format.substr(i + 1, end - i - 2);
    i = end - 1;
    size_t name_end = 0, bracket = 0;
    for (; name_end < field.size(); ++name_end) {
      if (field[name_end] == '[') ++bracket;
      if (field[name_end] == ']') --bracket;
      if (!bracket && (field[name_end] == '!' || field[name_end] == ':')) break;
    }
    const std::string name = field.substr(0, name_end);
    char conversion = 0;
    std::string spec;
    size_t rest = name_end;
    if (rest < field.size() && field[rest] == '!') {
      if (rest + 1 >= field.size()) fail("end of string while looking for conversion specifier");
      conversion = field[rest + 1];
      rest += 2;
    }
    if (rest < field.size() && field[rest] == ':')
      spec = field.substr(rest + 1);
    else if (rest < field.size())
      fail("expected ':' after conversion specifier");
    if (spec.find('{') != std::string::npos) spec = str_format(spec, args);
    const size_t first_end = std::min(name.find('.'), name.find('['));
    const std::string first = name.substr(0, first_end);
    Value value;
    if (first.empty() || std::all_of(first.begin(), first.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      size_t index;
      if (first.empty()) {
        if (manual) fail("cannot switch from manual field specification to automatic field numbering");
        automatic = true;
        index = auto_index++;
      } else {
        if (automatic) fail("cannot switch from automatic field numbering to manual field specification");
        manual = true;
        index = static_cast<size_t>(*parse_int(first, 10));
      }
      if (index >= args.positional.size())
        fail("Replacement index " + std::to_string(index) + " out of range for positional args tuple");
      value = args.positional[index];
    } else {
      const auto it =
          std::find_if(args.keyword.begin(), args.keyword.end(), [&](const auto& kv) { return kv.first == first; });
      if (it == args.keyword.end()) fail("KeyError: " + text::repr(first));
      value = it->second;
    }
    for (size_t k = first_end; k < name.size();) {
      if (name[k] == '.') {
        size_t stop = std::min(name.find('.', k + 1), name.find('[', k + 1));
        if (stop == std::string::npos) stop = name.size();
        value = get_attribute(value, name.substr(k + 1, stop - k - 1));
        k = stop;
      } else {
        const size_t close = name.find(']', k);
        if (close == std::string::npos) fail("Missing ']' in format string");
        const std::string key = name.substr(k + 1, close - k - 1);
        const auto number = parse_int(key, 10);
        value = get_item(value,
                         number && std::all_of(key.begin(), key.end(), [](char ch) { return ch >= '0' && ch <= '9'; })
                             ? Value::integer(*number)
                             : str_value(key));
        k = close + 1;
      }
    }
    if (conversion == 'r' || conversion == 'a')
      value = str_value(to_repr(value));
    else if (conversion == 's')
      value = str_value(to_str(value));
    else if (conversion)
      fail(std::string("Unknown conversion specifier ") + conversion);
    out += format_value(value, spec);
  }
  return out;
}

// --- Python methods --------------------------------------------------------------------------

using Method = Value (*)(const Value& self, CallArgs& args);

std::optional<int64_t> index_arg(const std::optional<Value>& v) {
  if (!is_set(v)) return std::nullopt;
  if (!v->is_integral()) fail("slice indices must be integers or None or have an __index__ method");
  return v->as_int();
}

// startswith/endswith accept a str or a tuple of str.
bool affix_match(const Value& self, CallArgs& args, bool prefix, const char* name) {
  Args a = bind(name, args, {"affix", "start", "end"}, 1);
  const std::string& s = self.as_string();
  auto one = [&](const Value& affix) {
    if (!affix.is_string())
      fail(std::string(name) + " first arg must be str or a tuple of str, not " + type_name(affix));
    return prefix ? text::starts_with(s, affix.as_string(), index_arg(a[1]), index_arg(a[2]))
                  : text::ends_with(s, affix.as_string(), index_arg(a[1]), index_arg(a[2]));
  };
  if (a[0]->kind() == Value::Kind::tuple) {
    for (const Value& affix : a[0]->items())
      if (one(affix)) return true;
    return false;
  }
  return one(*a[0]);
}

Value find_method(const Value& self, CallArgs& args, const char* name, bool from_right, bool raise) {
  Args a = bind(name, args, {"sub", "start", "end"}, 1);
  const int64_t at =
      text::find(self.as_string(), str_arg(a[0], "substring"), index_arg(a[1]), index_arg(a[2]), from_right);
  if (at < 0 && raise) fail("substring not found");
  return Value::integer(at);
}

Value strip_method(const Value& self, CallArgs& args, const char* name, bool left, bool right) {
  Args a = bind(name, args, {"chars"});
  return str_value(text::strip(self.as_string(), optional_str_arg(a[0], "chars"), left, right));
}

Value split_method(const Value& self, CallArgs& args, const char* name, bool from_right) {
  Args a = bind(name, args, {"sep", "maxsplit"});
  const auto sep = optional_str_arg(a[0], "sep");
  const int64_t max_splits = int_arg(a[1], "maxsplit", -1);
  try {
    return list_of_strings(from_right ? text::rsplit(self.as_string(), sep, max_splits)
                                      : text::split(self.as_string(), sep, max_splits));
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }
}

Value pad_method(const Value& self, CallArgs& args, const char* name, char align) {
  Args a = bind(name, args, {"width", "fillchar"}, 1);
  const std::string fill = a[1] ? str_arg(a[1], "fillchar") : " ";
  const std::u32string fill_cp = text::decode(fill);
  if (fill_cp.size() != 1) fail("The fill character must be exactly one character long");
  return str_value(padded(self.as_string(), int_arg(a[0], "width", 0), fill_cp[0], align));
}

template <bool (*Predicate)(char32_t)>
Value all_chars(const Value& self, CallArgs& args) {
  no_arguments("is", args);
  const std::u32string cps = text::decode(self.as_string());
  return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), Predicate));
}

const std::map<std::string, Method, std::less<>>& str_methods() {
  static const std::map<std::string, Method, std::less<>> methods = {
      {"capitalize",
       [](const Value& s, CallArgs& a) {
         no_arguments("capitalize", a);
         return str_value(text::capitalize(s.as_string()));
       }},
      {"casefold",
       [](const Value& s, CallArgs& a) {
         no_arguments("casefold", a);
         return str_value(text::lower(s.as_string()));
       }},
      {"center", [](const Value& s, CallArgs& a) { return pad_method(s, a, "center", '^'); }},
      {"count",
       [](const Value& s, CallArgs& a) {
         Args b = bind("count", a, {"sub", "start", "end"}, 1);
         return Value::integer(
             text::count(s.as_string(), str_arg(b[0], "substring"), index_arg(b[1]), index_arg(b[2])));
       }},
      {"endswith", [](const Value& s, CallArgs& a) { return Value::boolean(affix_match(s, a, false, "endswith")); }},
      {"find", [](const Value& s, CallArgs& a) { return find_method(s, a, "find", false, false); }},
      {"format", [](const Value& s, CallArgs& a) { return str_value(str_format(s.as_string(), a)); }},
      {"index", [](const Value& s, CallArgs& a) { return find_method(s, a, "index", false, true); }},
      {"isalnum", all_chars<text::is_alnum>},
      {"isalpha", all_chars<text::is_alpha>},
      {"isascii",
       [](const Value& s, CallArgs& a) {
         no_arguments("isascii", a);
         return Value::boolean(utf8::is_ascii(s.as_string()));
       }},
      {"isdecimal", all_chars<text::is_decimal>},
      {"isdigit", all_chars<text::is_digit>},
      {"islower",
       [](const Value& s, CallArgs& a) {
         no_arguments("islower", a);
         return Value::boolean(text::all_lower(s.as_string()));
       }},
      {"isnumeric", all_chars<text::is_numeric>},
      {"isspace", all_chars<text::is_space>},
      {"isupper",
       [](const Value& s, CallArgs& a) {
         no_arguments("isupper", a);
         return Value::boolean(text::all_upper(s.as_string()));
       }},
      {"join",
       [](const Value& s, CallArgs& a) {
         Args b = bind("join", a, {"iterable"}, 1);
         std::string out;
         const ValueList items = iterate(*b[0]);
         for (size_t i = 0; i < items.size(); ++i) {
           if (!items[i].is_string())
             fail("sequence item " + std::to_string(i) + ": expected str instance, " + type_name(items[i]) + " found");
           if (i) append_checked(out, s.as_string());
           append_checked(out, items[i].as_string());
         }
         return str_value(std::move(out));
       }},
      {"ljust", [](const Value& s, CallArgs& a) { return pad_method(s, a, "ljust", '<'); }},
      {"lower",
       [](const Value& s, CallArgs& a) {
         no_arguments("lower", a);
         return str_value(text::lower(s.as_string()));
       }},
      {"lstrip", [](const Value& s, CallArgs& a) { return strip_method(s, a, "lstrip", true, false); }},
      {"partition",
       [](const Value& s, CallArgs& a) {
         Args b = bind("partition", a, {"sep"}, 1);
         const std::string sep = str_arg(b[0], "sep");
         if (sep.empty()) fail("empty separator");
         const size_t at = s.as_string().find(sep);
         if (at == std::string::npos) return Value::tuple({s, str_value(""), str_value("")});
         return Value::tuple({str_value(s.as_string().substr(0, at)), str_value(sep),
                              str_value(s.as_string().substr(at + sep.size()))});
       }},
      {"removeprefix",
       [](const Value& s, CallArgs& a) {
         Args b = bind("removeprefix", a, {"prefix"}, 1);
         const std::string p = str_arg(b[0], "prefix");
         const std::string& t = s.as_string();
         return str_value(t.compare(0, p.size(), p) == 0 ? t.substr(p.size()) : t);
       }},
      {"removesuffix",
       [](const Value& s, CallArgs& a) {
         Args b = bind("removesuffix", a, {"suffix"}, 1);
         const std::string p = str_arg(b[0], "suffix");
         const std::string& t = s.as_string();
         const bool ends = !p.empty() && t.size() >= p.size() && t.compare(t.size() - p.size(), p.size(), p) == 0;
         return str_value(ends ? t.substr(0, t.size() - p.size()) : t);
       }},
      {"replace",
       [](const Value& s, CallArgs& a) {
         Args b = bind("replace", a, {"old", "new", "count"}, 2);
         return str_value(
             replaced(s.as_string(), str_arg(b[0], "old"), str_arg(b[1], "new"), int_arg(b[2], "count", -1)));
       }},
      {"rfind", [](const Value& s, CallArgs& a) { return find_method(s, a, "rfind", true, false); }},
      {"rindex", [](const Value& s, CallArgs& a) { return find_method(s, a, "rindex", true, true); }},
      {"rjust", [](const Value& s, CallArgs& a) { return pad_method(s, a, "rjust", '>'); }},
      {"rpartition",
       [](const Value& s, CallArgs& a) {
         Args b = bind("rpartition", a, {"sep"}, 1);
         const std::string sep = str_arg(b[0], "sep");
         if (sep.empty()) fail("empty separator");
         const size_t at = s.as_string().rfind(sep);
         if (at == std::string::npos) return Value::tuple({str_value(""), str_value(""), s});
         return Value::tuple({str_value(s.as_string().substr(0, at)), str_value(sep),
                              str_value(s.as_string().substr(at + sep.size()))});
       }},
      {"rsplit", [](const Value& s, CallArgs& a) { return split_method(s, a, "rsplit", true); }},
      {"rstrip", [](const Value& s, CallArgs& a) { return strip_method(s, a, "rstrip", false, true); }},
      {"split", [](const Value& s, CallArgs& a) { return split_method(s, a, "split", false); }},
      {"splitlines",
       [](const Value& s, CallArgs& a) {
         Args b = bind("splitlines", a, {"keepends"});
         return list_of_strings(text::splitlines(s.as_string(), bool_arg(b[0], false)));
       }},
      {"startswith", [](const Value& s, CallArgs& a) { return Value::boolean(affix_match(s, a, true, "startswith")); }},
      {"strip", [](const Value& s, CallArgs& a) { return strip_method(s, a, "strip", true, true); }},
      {"swapcase",
       [](const Value& s, CallArgs& a) {
         no_arguments("swapcase", a);
         return str_value(text::swapcase(s.as_string()));
       }},
      {"title",
       [](const Value& s, CallArgs& a) {
         no_arguments("title", a);
         return str_value(text::title(s.as_string()));
       }},
      {"upper",
       [](const Value& s, CallArgs& a) {
         no_arguments("upper", a);
         return str_value(text::upper(s.as_string()));
       }},
      {"zfill",
       [](const Value& s, CallArgs& a) {
         Args b = bind("zfill", a, {"width"}, 1);
         const std::string& t = s.as_string();
         const int64_t width = int_arg(b[0], "width", 0), size = text::length(t);
         if (size >= width) return s;
         check_result_size(t.size() + static_cast<uint64_t>(width - size));
         const size_t sign = !t.empty() && (t[0] == '+' || t[0] == '-') ? 1 : 0;
         return str_value(t.substr(0, sign) + std::string(width - size, '0') + t.substr(sign));
       }},
  };
  return methods;
}

Value sequence_index(const Value& self, CallArgs& args) {
  Args a = bind("index", args, {"value", "start", "stop"}, 1);
  const ValueList& items = self.items();
  const auto size = static_cast<int64_t>(items.size());
  int64_t start = int_arg(a[1], "start", 0), stop = int_arg(a[2], "stop", size);
  if (start < 0) start = std::max<int64_t>(start + size, 0);
  if (stop < 0) stop = std::max<int64_t>(stop + size, 0);
  for (int64_t i = start; i < std::min(stop, size); ++i)
    if (equal(items[i], *a[0])) return Value::integer(i);
  fail(to_repr(*a[0]) + " is not in " + type_name(self));
}

Value sequence_count(const Value& self, CallArgs& args) {
  Args a = bind("count", args, {"value"}, 1);
  int64_t n = 0;
  for (const Value& item : self.items()) n += equal(item, *a[0]) ? 1 : 0;
  return Value::integer(n);
}

Value list_pop(const Value& self, CallArgs& args) {
  Args a = bind("pop", args, {"index"});
  ValueList& items = self.items();
  if (items.empty()) fail("pop from empty list");
  int64_t i = int_arg(a[0], "index", -1);
  if (i < 0) i += static_cast<int64_t>(items.size());
  if (i < 0 || i >= static_cast<int64_t>(items.size())) fail("pop index out of range");
  Value v = items[i];
  items.erase(items.begin() + i);
  return v;
}

ValueList dict_items(const Dict& dict) {
  ValueList items;
  for (const auto& [k, v] : dict.entries) items.push_back(Value::tuple({k, v}));
  return items;
}

Value bound_method(const Value& self, const std::string& name, Method method) {
  return Value::callable(type_name(self) + "." + name, [self, method](CallArgs& args) { return method(self, args); });
}

// markupsafe.Markup's own versions of these str methods escape their string arguments and return
// Markup.
bool is_markup_method(std::string_view name) {
  static const std::vector<std::string_view> names = {"capitalize", "title",    "lower",  "upper",  "replace",
                                                      "ljust",      "rjust",    "lstrip", "rstrip", "center",
                                                      "strip",      "swapcase", "zfill"};
  return std::find(names.begin(), names.end(), name) != names.end();
}

Value escaped(const Value& v) {
  return v.is_string() && !v.is_markup() ? Value::string(text::escape_html(v.as_string()), true) : v;
}

Value markup_method(const Value& self, const std::string& name, Method method) {
  return Value::callable("Markup." + name, [self, method](CallArgs& args) {
    CallArgs escaped_args = args;
    for (Value& v : escaped_args.positional) v = escaped(v);
    for (auto& [k, v] : escaped_args.keyword) v = escaped(v);
    const Value result = method(self, escaped_args);
    return Value::string(result.as_string(), true);
  });
}

// jinja2's filters call str methods on soft_str(value), which keeps a Markup a Markup.
Value like_input(const Value& input, std::string result) { return Value::string(std::move(result), input.is_markup()); }

// The Python attribute `name` of `object`, if it has one (methods; a loop's properties; a
// namespace's attributes); std::nullopt when Python raises AttributeError.
std::optional<Value> python_attribute(const Value& object, const std::string& name) {
  const bool dunder = name.size() > 4 && name.rfind("__", 0) == 0 && name.compare(name.size() - 2, 2, "__") == 0;
  if (dunder) return unsafe_attribute(object, name);
  switch (object.kind()) {
    case Value::Kind::string: {
      const auto& methods = str_methods();
      if (auto it = methods.find(name); it != methods.end()) {
        if (object.is_markup() && is_markup_method(name)) return markup_method(object, name, it->second);
        return bound_method(object, name, it->second);
      }
      if (name == "encode" || name == "expandtabs" || name == "format_map" || name == "istitle" ||
          name == "isidentifier" || name == "isprintable" || name == "maketrans" || name == "translate")
        return Value::callable("str." + name,
                               [name](CallArgs&) -> Value { fail("str." + name + "() is not supported"); });
      return std::nullopt;
    }
    case Value::Kind::list:
    case Value::Kind::tuple: {
      if (!object.view_name().empty()) return std::nullopt;
      const bool list = object.kind() == Value::Kind::list;
      if (name == "index") return bound_method(object, name, sequence_index);
      if (name == "count") return bound_method(object, name, sequence_count);
      if (!list) return std::nullopt;
      if (name == "copy")
        return bound_method(object, name, [](const Value& s, CallArgs& a) {
          no_arguments("copy", a);
          return Value::list(s.items());
        });
      if (name == "pop") return bound_method(object, name, list_pop);
      if (name == "clear")
        return bound_method(object, name, [](const Value& s, CallArgs& a) {
          no_arguments("clear", a);
          s.items().clear();
          return Value::none();
        });
      if (name == "append" || name == "extend" || name == "insert" || name == "remove" || name == "reverse" ||
          name == "sort")
        return unsafe_attribute(object, name);
      return std::nullopt;
    }
    case Value::Kind::dict: {
      if (name == "get")
        return bound_method(object, name, [](const Value& s, CallArgs& a) {
          Args b = bind("get", a, {"key", "default"}, 1);
          const Value* found = s.as_dict().find(*b[0]);
          return found ? *found : b[1].value_or(Value::none());
        });
      if (name == "items")
        return bound_method(object, name, [](const Value& s, CallArgs& a) {
          no_arguments("items", a);
          return Value::view("dict_items", dict_items(s.as_dict()));
        });
      if (name == "keys")
        return bound_method(object, name, [](const Value& s, CallArgs& a) {
          no_arguments("keys", a);
          return Value::view("dict_keys", iterate(s));
        });
      if (name == "values")
        return bound_method(object, name, [](const Value& s, CallArgs& a) {
          no_arguments("values", a);
          ValueList values;
          for (const auto& [k, v] : s.as_dict().entries) values.push_back(v);
          return Value::view("dict_values", std::move(values));
        });
      if (name == "copy")
        return bound_method(object, name, [](const Value& s, CallArgs& a) {
          no_arguments("copy", a);
          return Value::dict(std::make_shared<Dict>(s.as_dict()));
        });
      if (name == "clear" || name == "pop" || name == "popitem" || name == "setdefault" || name == "update")
        return unsafe_attribute(object, name);
      return std::nullopt;
    }
    case Value::Kind::ns: {
      if (const Value* v = object.as_ns().attributes.find(str_value(name))) return *v;
      return std::nullopt;
    }
    case Value::Kind::loop: {
      const Loop& l = object.as_loop();
      const auto length = static_cast<int64_t>(l.items.size());
      if (name == "index") return Value::integer(l.index0 + 1);
      if (name == "index0") return Value::integer(l.index0);
      if (name == "revindex") return Value::integer(length - l.index0);
      if (name == "revindex0") return Value::integer(length - l.index0 - 1);
      if (name == "first") return Value::boolean(l.index0 == 0);
      if (name == "last") return Value::boolean(l.index0 == length - 1);
      if (name == "length") return Value::integer(length);
      if (name == "depth") return Value::integer(l.depth0 + 1);
      if (name == "depth0") return Value::integer(l.depth0);
      if (name == "previtem")
        return l.index0 > 0 ? l.items[l.index0 - 1] : Value::undefined("there is no previous item");
      if (name == "nextitem")
        return l.index0 + 1 < length ? l.items[l.index0 + 1] : Value::undefined("there is no next item");
      if (name == "cycle")
        return bound_method(object, name, [](const Value& s, CallArgs& a) {
          if (a.positional.empty()) fail("no items for cycling given");
          return a.positional[s.as_loop().index0 % static_cast<int64_t>(a.positional.size())];
        });
      if (name == "changed")
        return bound_method(object, name, [](const Value& s, CallArgs& a) {
          Loop& loop = s.as_loop();
          const bool changed =
              !loop.last_changed || !equal(Value::tuple(*loop.last_changed), Value::tuple(a.positional));
          if (changed) loop.last_changed = a.positional;
          return Value::boolean(changed);
        });
      return std::nullopt;
    }
    case Value::Kind::boolean:
    case Value::Kind::integer:
      if (name == "real") return Value::integer(object.as_int());
      if (name == "imag") return Value::integer(0);
      return std::nullopt;
    case Value::Kind::floating:
      if (name == "real") return object;
      if (name == "imag") return Value::floating(0.0);
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

// --- filters ---------------------------------------------------------------------------------

using Filter = Value (*)(const Value& value, CallArgs& args);

Value filter_items(const Value& value, CallArgs& args) {
  bind("items", args, {});
  return Value::generator([value]() -> ValueList {
    if (value.is_undefined()) return {};
    if (value.kind() != Value::Kind::dict) fail("Can only get item pairs from a mapping.");
    return dict_items(value.as_dict());
  });
}

Value filter_default(const Value& value, CallArgs& args) {
  Args a = bind("default", args, {"default_value", "boolean"});
  if (value.is_undefined() || (bool_arg(a[1], false) && !truthy(value))) return a[0].value_or(str_value(""));
  return value;
}

Value filter_dictsort(const Value& value, CallArgs& args) {
  Args a = bind("dictsort", args, {"case_sensitive", "by", "reverse"});
  if (value.is_undefined()) fail_undefined(value);
  if (value.kind() != Value::Kind::dict) fail("'" + type_name(value) + "' object has no attribute 'items'");
  const std::string by = a[1] ? str_arg(a[1], "by") : "key";
  if (by != "key" && by != "value") fail("You can only sort by either \"key\" or \"value\"");
  const size_t position = by == "key" ? 0 : 1;
  const bool ignore_case = !bool_arg(a[0], false);
  return Value::list(sorted(
      dict_items(value.as_dict()),
      [&](const Value& item) { return ignore_case ? lowered(item.items()[position]) : item.items()[position]; },
      bool_arg(a[2], false)));
}

Value filter_first(const Value& value, CallArgs& args) {
  bind("first", args, {});
  if (value.kind() == Value::Kind::iterator) {
    Iterator& it = value.as_iterator();
    const ValueList& items = it.produced();
    if (it.next < items.size()) return items[it.next++];
    return Value::undefined("No first item, sequence was empty.");
  }
  const ValueList items = iterate(value);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value filter_last(const Value& value, CallArgs& args) {
  bind("last", args, {});
  if (value.kind() == Value::Kind::iterator) fail("'generator' object is not reversible");
  if (!value.is_undefined() && !value.is_string() && !value.is_sequence() && value.kind() != Value::Kind::dict)
    fail("'" + type_name(value) + "' object is not reversible");
  const ValueList items = iterate(value);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value filter_join(const Value& value, CallArgs& args) {
  Args a = bind("join", args, {"d", "attribute"});
  const std::string separator = a[0] ? to_str(*a[0]) : "";
  const AttrGetter getter = attr_getter(a[1], false);
  std::string out;
  bool first = true;
  for (const Value& item : iterate(value)) {
    if (!first) append_checked(out, separator);
    first = false;
    append_checked(out, to_str(a[1] ? getter(item) : item));
  }
  return str_value(std::move(out));
}

Value filter_length(const Value& value, CallArgs& args) {
  bind("length", args, {});
  return Value::integer(length(value));
}

Value filter_list(const Value& value, CallArgs& args) {
  bind("list", args, {});
  return Value::list(iterate(value));
}

Value filter_string(const Value& value, CallArgs& args) {
  bind("string", args, {});
  if (value.is_string()) return value;
  return str_value(to_str(value));
}

Value filter_upper(const Value& value, CallArgs& args) {
  bind("upper", args, {});
  return like_input(value, text::upper(to_str(value)));
}

Value filter_lower(const Value& value, CallArgs& args) {
  bind("lower", args, {});
  return like_input(value, text::lower(to_str(value)));
}

Value filter_capitalize(const Value& value, CallArgs& args) {
  bind("capitalize", args, {});
  return like_input(value, text::capitalize(to_str(value)));
}

// jinja2's title: split at runs of `-`, whitespace, ( { [ <; upper-case each part's first letter.
Value filter_title(const Value& value, CallArgs& args) {
  bind("title", args, {});
  const std::u32string s = text::decode(to_str(value));
  auto separator = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || text::is_space(c);
  };
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const bool sep = separator(s[i]);
    size_t j = i;
    while (j < s.size() && separator(s[j]) == sep) ++j;
    std::string head;
    text::append_utf8(head, s[i]);
    out += text::upper(head) + text::lower(text::encode(std::u32string_view(s).substr(i + 1, j - i - 1)));
    i = j;
  }
  return str_value(std::move(out));
}

Value filter_trim(const Value& value, CallArgs& args) {
  Args a = bind("trim", args, {"chars"});
  return like_input(value, text::strip(to_str(value), optional_str_arg(a[0], "chars"), true, true));
}

Value filter_replace(const Value& value, CallArgs& args) {
  Args a = bind("replace", args, {"old", "new", "count"}, 2);
  return str_value(replaced(to_str(value), to_str(*a[0]), to_str(*a[1]), int_arg(a[2], "count", -1)));
}

Value filter_center(const Value& value, CallArgs& args) {
  Args a = bind("center", args, {"width"});
  return like_input(value, padded(to_str(value), int_arg(a[0], "width", 80), U' ', '^'));
}

Value filter_indent(const Value& value, CallArgs& args) {
  Args a = bind("indent", args, {"width", "first", "blank"});
  if (value.is_undefined()) fail_undefined(value);
  if (!value.is_string()) fail("unsupported operand type(s) for +=: '" + type_name(value) + "' and 'str'");
  std::string indention;
  if (a[0] && a[0]->is_string()) {
    indention = a[0]->as_string();
  } else {
    const int64_t width = std::max<int64_t>(int_arg(a[0], "width", 4), 0);
    check_result_size(static_cast<uint64_t>(width));
    indention = std::string(width, ' ');
  }
  const std::vector<std::string> lines = text::splitlines(value.as_string() + "\n", false);
  // Every line indented, the first too, plus the text and its newlines.
  check_result_size(value.as_string().size() + lines.size() + result_size(lines.size() + 1, indention.size()));
  std::string out;
  if (bool_arg(a[2], false)) {
    for (size_t i = 0; i < lines.size(); ++i) out += (i ? "\n" + indention : "") + lines[i];
  } else {
    out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) out += "\n" + (lines[i].empty() ? "" : indention + lines[i]);
  }
  if (bool_arg(a[1], false)) out = indention + out;
  return str_value(std::move(out));
}

Value filter_int(const Value& value, CallArgs& args) {
  Args a = bind("int", args, {"default", "base"});
  const Value fallback = a[0].value_or(Value::integer(0));
  auto from_float = [&](double f) -> Value {
    if (std::isinf(f)) fail("cannot convert float infinity to integer");
    if (std::isnan(f)) return fallback;
    if (std::fabs(f) >= 9223372036854775808.0)
      fail("integer overflow: int(" + float_repr(f) + ") does not fit 64 bits");
    return Value::integer(static_cast<int64_t>(std::trunc(f)));
  };
  if (value.is_undefined()) fail_undefined(value);
  if (value.is_string()) {
    if (auto i = parse_int(value.as_string(), static_cast<int>(int_arg(a[1], "base", 10)))) return Value::integer(*i);
    if (auto f = parse_float(value.as_string())) return from_float(*f);
    return fallback;
  }
  if (value.is_integral()) return Value::integer(value.as_int());
  if (value.kind() == Value::Kind::floating) return from_float(value.as_float());
  return fallback;
}

Value filter_float(const Value& value, CallArgs& args) {
  Args a = bind("float", args, {"default"});
  const Value fallback = a[0].value_or(Value::floating(0.0));
  if (value.is_undefined()) fail_undefined(value);
  if (value.is_number()) return Value::floating(value.as_float());
  if (value.is_string()) {
    if (auto f = parse_float(value.as_string())) return Value::floating(*f);
  }
  return fallback;
}

Value filter_abs(const Value& value, CallArgs& args) {
  bind("abs", args, {});
  if (value.is_integral()) {
    if (value.as_int() == std::numeric_limits<int64_t>::min()) fail("integer overflow");
    return Value::integer(std::llabs(value.as_int()));
  }
  if (value.kind() == Value::Kind::floating) return Value::floating(std::fabs(value.as_float()));
  fail("bad operand type for abs(): '" + type_name(value) + "'");
}

// Python's round(x, n): correctly rounded through the shortest decimal, ties to even.
Value filter_round(const Value& value, CallArgs& args) {
  Args a = bind("round", args, {"precision", "method"});
  const int64_t precision = int_arg(a[0], "precision", 0);
  const std::string method = a[1] ? str_arg(a[1], "method") : "common";
  if (method != "common" && method != "ceil" && method != "floor") fail("method must be common, ceil or floor");
  if (value.is_undefined()) fail_undefined(value);
  if (!value.is_number()) fail("type " + type_name(value) + " doesn't define __round__ method");
  if (method != "common") {
    const double scale = std::pow(10.0, static_cast<double>(precision));
    const double scaled = value.as_float() * scale;
    return Value::floating((method == "ceil" ? std::ceil(scaled) : std::floor(scaled)) / scale);
  }
  if (value.is_integral()) {
    if (precision >= 0) return Value::integer(value.as_int());
    const double scale = std::pow(10.0, static_cast<double>(-precision));
    return Value::integer(static_cast<int64_t>(std::nearbyint(static_cast<double>(value.as_int()) / scale) * scale));
  }
  const double f = value.as_float();
  if (!std::isfinite(f)) return value;
  if (precision < 0) {
    const double scale = std::pow(10.0, static_cast<double>(-precision));
    return Value::floating(std::nearbyint(f / scale) * scale);
  }
  const std::string format = "%." + std::to_string(std::min<int64_t>(precision, 400)) + "f";
  return Value::floating(std::strtod(format_number(format.c_str(), f).c_str(), nullptr));
}

Value filter_reverse(const Value& value, CallArgs& args) {
  bind("reverse", args, {});
  if (value.is_string()) {
    std::u32string s = text::decode(value.as_string());
    std::reverse(s.begin(), s.end());
    return str_value(text::encode(s));
  }
  if (value.is_undefined() || value.is_sequence() || value.kind() == Value::Kind::dict) {
    ValueList items = iterate(value);
    std::reverse(items.begin(), items.end());
    return Value::iterator(std::move(items));
  }
  if (value.kind() == Value::Kind::iterator) {
    ValueList items = iterate(value);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  fail("argument must be iterable");
}

Value filter_sort(const Value& value, CallArgs& args) {
  Args a = bind("sort", args, {"reverse", "case_sensitive", "attribute"});
  return Value::list(sorted(iterate(value), multi_attr_getter(a[2], !bool_arg(a[1], false)), bool_arg(a[0], false)));
}

Value filter_unique(const Value& value, CallArgs& args) {
  Args a = bind("unique", args, {"case_sensitive", "attribute"});
  const AttrGetter getter = attr_getter(a[1], !bool_arg(a[0], false));
  return Value::generator([value, getter] {
    ValueList seen, out;
    for (const Value& item : iterate(value)) {
      const Value key = getter(item);
      check_hashable(key);
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equal(s, key); })) {
        seen.push_back(key);
        out.push_back(item);
      }
    }
    return out;
  });
}

Value min_or_max(const Value& value, CallArgs& args, bool max) {
  Args a = bind(max ? "max" : "min", args, {"case_sensitive", "attribute"});
  const ValueList items = iterate(value);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  const AttrGetter key = attr_getter(a[1], !bool_arg(a[0], false));
  size_t best = 0;
  Value best_key = key(items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = key(items[i]);
    if (max ? less(best_key, k) : less(k, best_key)) {
      best = i;
      best_key = std::move(k);
    }
  }
  return items[best];
}

Value filter_max(const Value& value, CallArgs& args) { return min_or_max(value, args, true); }
Value filter_min(const Value& value, CallArgs& args) { return min_or_max(value, args, false); }

Value filter_sum(const Value& value, CallArgs& args) {
  Args a = bind("sum", args, {"attribute", "start"});
  const AttrGetter getter = attr_getter(a[0], false);
  Value total = a[1].value_or(Value::integer(0));
  for (const Value& item : iterate(value)) total = binary(BinaryOp::add, total, a[0] ? getter(item) : item);
  return total;
}

ValueList map_items(const Value& value, CallArgs& args);

Value filter_map(const Value& value, CallArgs& args) {
  return Value::generator([value, args]() mutable { return map_items(value, args); });
}

ValueList map_items(const Value& value, CallArgs& args) {
  if (!truthy(value)) return {};
  ValueList out;
  const auto attribute =
      std::find_if(args.keyword.begin(), args.keyword.end(), [](auto& kv) { return kv.first == "attribute"; });
  if (args.positional.empty() && attribute != args.keyword.end()) {
    Args a = bind("map", args, {"attribute", "default"});
    const AttrGetter getter = attr_getter(a[0], false, a[1]);
    for (const Value& item : iterate(value)) out.push_back(getter(item));
    return out;
  }
  if (args.positional.empty()) fail("map requires a filter argument");
  const std::string name = to_str(args.positional[0]);
  for (const Value& item : iterate(value)) {
    CallArgs call{ValueList(args.positional.begin() + 1, args.positional.end()), args.keyword};
    out.push_back(apply_filter(name, item, call));
  }
  return out;
}

ValueList select_or_reject_items(const Value& value, CallArgs& args, bool select, bool by_attribute) {
  if (!truthy(value)) return {};
  size_t offset = 0;
  AttrGetter getter;
  if (by_attribute) {
    if (args.positional.empty()) fail("Missing parameter for attribute name");
    getter = attr_getter(args.positional[0], false);
    offset = 1;
  }
  std::optional<std::string> test;
  if (args.positional.size() > offset) test = to_str(args.positional[offset]);
  ValueList out;
  for (const Value& item : iterate(value)) {
    const Value subject = by_attribute ? getter(item) : item;
    bool passed;
    if (test) {
      CallArgs call{ValueList(args.positional.begin() + offset + 1, args.positional.end()), args.keyword};
      passed = apply_test(*test, subject, call);
    } else {
      passed = truthy(subject);
    }
    if (passed == select) out.push_back(item);
  }
  return out;
}

Value select_or_reject(const Value& value, CallArgs& args, bool select, bool by_attribute) {
  return Value::generator([value, args, select, by_attribute]() mutable {
    return select_or_reject_items(value, args, select, by_attribute);
  });
}

Value filter_select(const Value& v, CallArgs& a) { return select_or_reject(v, a, true, false); }
Value filter_reject(const Value& v, CallArgs& a) { return select_or_reject(v, a, false, false); }
Value filter_selectattr(const Value& v, CallArgs& a) { return select_or_reject(v, a, true, true); }
Value filter_rejectattr(const Value& v, CallArgs& a) { return select_or_reject(v, a, false, true); }

Value filter_batch(const Value& value, CallArgs& args) {
  Args a = bind("batch", args, {"linecount", "fill_with"}, 1);
  return Value::generator([value, a] {
    const int64_t count = int_arg(a[0], "linecount", 1);
    ValueList batches, current;
    for (const Value& item : iterate(value)) {
      if (static_cast<int64_t>(current.size()) == count) {
        batches.push_back(Value::list(std::move(current)));
        current.clear();
      }
      current.push_back(item);
    }
    if (!current.empty()) {
      if (is_set(a[1]) && count > static_cast<int64_t>(current.size())) {
        result_size(static_cast<uint64_t>(count), sizeof(Value));
        while (static_cast<int64_t>(current.size()) < count) current.push_back(*a[1]);
      }
      batches.push_back(Value::list(std::move(current)));
    }
    return batches;
  });
}

Value filter_slice(const Value& value, CallArgs& args) {
  Args a = bind("slice", args, {"slices", "fill_with"}, 1);
  return Value::generator([value, a] {
    const ValueList seq = iterate(value);
    const int64_t slices = int_arg(a[0], "slices", 1);
    if (slices <= 0) fail("integer division or modulo by zero");
    result_size(static_cast<uint64_t>(slices), sizeof(Value));
    const auto length = static_cast<int64_t>(seq.size());
    const int64_t per_slice = length / slices, with_extra = length % slices;
    int64_t offset = 0;
    ValueList out;
    for (int64_t n = 0; n < slices; ++n) {
      const int64_t start = offset + n * per_slice;
      if (n < with_extra) ++offset;
      const int64_t end = offset + (n + 1) * per_slice;
      ValueList part(seq.begin() + start, seq.begin() + end);
      if (is_set(a[1]) && n >= with_extra) part.push_back(*a[1]);
      out.push_back(Value::list(std::move(part)));
    }
    return out;
  });
}

Value filter_attr(const Value& value, CallArgs& args) {
  Args a = bind("attr", args, {"name"}, 1);
  const std::string name = str_arg(a[0], "name");
  if (value.is_undefined()) fail_undefined(value);
  if (auto attribute = python_attribute(value, name)) return *attribute;
  return missing_attribute(value, name);
}

Value filter_escape(const Value& value, CallArgs& args) {
  bind("escape", args, {});
  if (value.is_string() && value.is_markup()) return value;
  return Value::string(text::escape_html(to_str(value)), true);
}

Value filter_forceescape(const Value& value, CallArgs& args) {
  bind("forceescape", args, {});
  return Value::string(text::escape_html(to_str(value)), true);
}

Value filter_safe(const Value& value, CallArgs& args) {
  bind("safe", args, {});
  return Value::string(to_str(value), true);
}

Value filter_format(const Value& value, CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty())
    fail("can't handle positional and keyword arguments at the same time");
  if (!args.keyword.empty()) {
    auto mapping = std::make_shared<Dict>();
    for (auto& [k, v] : args.keyword) mapping->set(str_value(k), v);
    return binary(BinaryOp::mod, str_value(to_str(value)), Value::dict(mapping));
  }
  return binary(BinaryOp::mod, str_value(to_str(value)), Value::tuple(args.positional));
}

Value filter_truncate(const Value& value, CallArgs& args) {
  Args a = bind("truncate", args, {"length", "killwords", "end", "leeway"});
  const int64_t length = int_arg(a[0], "length", 255);
  const std::string end = a[2] ? str_arg(a[2], "end") : "...";
  const int64_t end_length = text::length(end);
  const int64_t leeway = int_arg(a[3], "leeway", 5);
  if (length < end_length) fail("expected length >= " + std::to_string(end_length) + ", got " + std::to_string(length));
  if (leeway < 0) fail("expected leeway >= 0, got " + std::to_string(leeway));
  if (!value.is_string()) {  // Python takes len(s) and slices s: only undefined and short sequences pass
    if (jinja::length(value) <= length + leeway) return value;
    fail("can only concatenate " + type_name(value) + " (not \"str\") to " + type_name(value));
  }
  const std::u32string s = text::decode(value.as_string());
  if (static_cast<int64_t>(s.size()) <= length + leeway) return value;
  const std::string head = text::encode(std::u32string_view(s).substr(0, length - end_length));
  if (bool_arg(a[1], false)) return str_value(head + end);
  return str_value(text::rsplit(head, std::string(" "), 1)[0] + end);
}

Value filter_wordcount(const Value& value, CallArgs& args) {
  bind("wordcount", args, {});
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : text::decode(to_str(value))) {
    const bool word = text::is_word(c);
    if (word && !in_word) ++words;
    in_word = word;
  }
  return Value::integer(words);
}

// HF's tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
Value filter_tojson(const Value& value, CallArgs& args) {
  Args a = bind("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonStyle style;
  style.ensure_ascii = bool_arg(a[0], false);
  if (is_set(a[1])) {
    if (a[1]->is_string())
      style.indent = a[1]->as_string();
    else
      style.indent = std::string(result_size(std::max<int64_t>(int_arg(a[1], "indent", 0), 0), 1), ' ');
  }
  if (is_set(a[2])) {
    const ValueList parts = iterate(*a[2]);
    if (parts.size() != 2 || !parts[0].is_string() || !parts[1].is_string())
      fail("separators must be a pair of strings (item_separator, key_separator)");
    style.separators = std::make_pair(parts[0].as_string(), parts[1].as_string());
  }
  style.sort_keys = bool_arg(a[3], false);
  return str_value(to_json(value, style));
}

Value filter_unsupported(const Value&, CallArgs&) { return Value(); }

const std::map<std::string, Filter, std::less<>>& filters() {
  static const std::map<std::string, Filter, std::less<>> table = {
      {"abs", filter_abs},
      {"attr", filter_attr},
      {"batch", filter_batch},
      {"capitalize", filter_capitalize},
      {"center", filter_center},
      {"count", filter_length},
      {"d", filter_default},
      {"default", filter_default},
      {"dictsort", filter_dictsort},
      {"e", filter_escape},
      {"escape", filter_escape},
      {"filesizeformat", filter_unsupported},
      {"first", filter_first},
      {"float", filter_float},
      {"forceescape", filter_forceescape},
      {"format", filter_format},
      {"groupby", filter_unsupported},
      {"indent", filter_indent},
      {"int", filter_int},
      {"items", filter_items},
      {"join", filter_join},
      {"last", filter_last},
      {"length", filter_length},
      {"list", filter_list},
      {"lower", filter_lower},
      {"map", filter_map},
      {"max", filter_max},
      {"min", filter_min},
      {"pprint", filter_unsupported},
      {"random", filter_unsupported},
      {"reject", filter_reject},
      {"rejectattr", filter_rejectattr},
      {"replace", filter_replace},
      {"reverse", filter_reverse},
      {"round", filter_round},
      {"safe", filter_safe},
      {"select", filter_select},
      {"selectattr", filter_selectattr},
      {"slice", filter_slice},
      {"sort", filter_sort},
      {"string", filter_string},
      {"striptags", filter_unsupported},
      {"sum", filter_sum},
      {"title", filter_title},
      {"tojson", filter_tojson},
      {"trim", filter_trim},
      {"truncate", filter_truncate},
      {"unique", filter_unique},
      {"upper", filter_upper},
      {"urlencode", filter_unsupported},
      {"urlize", filter_unsupported},
      {"wordcount", filter_wordcount},
      {"wordwrap", filter_unsupported},
      {"xmlattr", filter_unsupported},
  };
  return table;
}

// --- tests -----------------------------------------------------------------------------------

Value one_argument(const std::string& test, CallArgs& args) {
  Args a = bind(test, args, {"other"}, 1);
  return *a[0];
}

bool is_sameas(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::none:
      return true;
    case Value::Kind::boolean:
      return a.as_bool() == b.as_bool();
    case Value::Kind::integer:
      return a.as_int() == b.as_int() && a.as_int() >= -5 && a.as_int() <= 256;  // CPython's cached ints
    case Value::Kind::list:
    case Value::Kind::tuple:
    case Value::Kind::dict:
    case Value::Kind::iterator:
    case Value::Kind::ns:
    case Value::Kind::callable:
    case Value::Kind::loop:
      return a.identity() == b.identity();
    default:
      return false;
  }
}

bool run_test(const std::string& name, const Value& v, CallArgs& args) {
  using K = Value::Kind;
  auto no_args = [&] { bind(name, args, {}); };
  if (name == "defined") return no_args(), !v.is_undefined();
  if (name == "undefined") return no_args(), v.is_undefined();
  if (name == "none") return no_args(), v.is_none();
  if (name == "boolean") return no_args(), v.kind() == K::boolean;
  if (name == "false") return no_args(), v.kind() == K::boolean && !v.as_bool();
  if (name == "true") return no_args(), v.kind() == K::boolean && v.as_bool();
  if (name == "integer") return no_args(), v.kind() == K::integer;
  if (name == "float") return no_args(), v.kind() == K::floating;
  if (name == "number") return no_args(), v.is_number();
  if (name == "string") return no_args(), v.is_string();
  if (name == "mapping") return no_args(), v.kind() == K::dict;
  if (name == "sequence")
    return no_args(), v.is_undefined() || v.is_string() || v.kind() == K::dict ||
                          (v.is_sequence() && v.view_name().rfind("dict_", 0) != 0);
  if (name == "iterable")
    return no_args(), v.is_undefined() || v.is_string() || v.is_sequence() || v.kind() == K::dict ||
                          v.kind() == K::iterator || v.kind() == K::loop;
  if (name == "callable") return no_args(), v.kind() == K::callable || v.is_undefined() || v.kind() == K::loop;
  if (name == "escaped") return no_args(), v.is_string() && v.is_markup();
  if (name == "lower") return no_args(), text::all_lower(to_str(v));
  if (name == "upper") return no_args(), text::all_upper(to_str(v));
  if (name == "odd") return no_args(), equal(binary(BinaryOp::mod, v, Value::integer(2)), Value::integer(1));
  if (name == "even") return no_args(), equal(binary(BinaryOp::mod, v, Value::integer(2)), Value::integer(0));
  if (name == "divisibleby") {
    Args a = bind(name, args, {"num"}, 1);
    return equal(binary(BinaryOp::mod, v, *a[0]), Value::integer(0));
  }
  if (name == "filter") return no_args(), v.is_string() && has_filter(v.as_string());
  if (name == "test") return no_args(), v.is_string() && has_test(v.as_string());
  if (name == "sameas") return is_sameas(v, one_argument(name, args));
  if (name == "in") return contains(one_argument(name, args), v);
  if (name == "==" || name == "eq" || name == "equalto") return equal(v, one_argument(name, args));
  if (name == "!=" || name == "ne") return !equal(v, one_argument(name, args));
  if (name == ">" || name == "gt" || name == "greaterthan") return ordered(Order::gt, v, one_argument(name, args));
  if (name == ">=" || name == "ge") return ordered(Order::ge, v, one_argument(name, args));
  if (name == "<" || name == "lt" || name == "lessthan") return ordered(Order::lt, v, one_argument(name, args));
  if (name == "<=" || name == "le") return ordered(Order::le, v, one_argument(name, args));
  fail("No test named '" + name + "' found.");
}

const std::vector<std::string>& test_names() {
  static const std::vector<std::string> names = {
      "odd",     "even",   "divisibleby", "defined",  "undefined", "filter", "test",    "none",
      "boolean", "false",  "true",        "integer",  "float",     "lower",  "upper",   "string",
      "mapping", "number", "sequence",    "iterable", "callable",  "sameas", "escaped", "in",
      "==",      "eq",     "equalto",     "!=",       "ne",        ">",      "gt",      "greaterthan",
      "ge",      ">=",     "<",           "lt",       "lessthan",  "<=",     "le"};
  return names;
}

// --- globals ---------------------------------------------------------------------------------

Value global_range(CallArgs& args) {
  if (!args.keyword.empty()) fail("range() takes no keyword arguments");
  const ValueList& p = args.positional;
  if (p.empty() || p.size() > 3) fail("range expected at most 3 arguments, got " + std::to_string(p.size()));
  for (const Value& v : p) {
    if (v.is_undefined()) fail_undefined(v);
    if (!v.is_integral()) fail("'" + type_name(v) + "' object cannot be interpreted as an integer");
  }
  const int64_t start = p.size() == 1 ? 0 : p[0].as_int();
  const int64_t stop = p.size() == 1 ? p[0].as_int() : p[1].as_int();
  const int64_t step = p.size() == 3 ? p[2].as_int() : 1;
  if (step == 0) fail("range() arg 3 must not be zero");
  const long double count = step > 0 ? std::ceil(static_cast<long double>(stop - start) / step)
                                     : std::ceil(static_cast<long double>(start - stop) / -step);
  if (count > 100000) fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  ValueList items;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) items.push_back(Value::integer(i));
  const std::string repr = "range(" + std::to_string(start) + ", " + std::to_string(stop) +
                           (step != 1 ? ", " + std::to_string(step) : "") + ")";
  return Value::view("range", std::move(items), repr);
}

std::shared_ptr<Dict> dict_from_args(const std::string& function, CallArgs& args) {
  auto dict = std::make_shared<Dict>();
  if (args.positional.size() > 1)
    fail(function + " expected at most 1 argument, got " + std::to_string(args.positional.size()));
  if (!args.positional.empty()) {
    const Value& source = args.positional[0];
    if (source.kind() == Value::Kind::dict) {
      dict->entries = source.as_dict().entries;
    } else {
      for (const Value& pair : iterate(source)) {
        const ValueList kv = iterate(pair);
        if (kv.size() != 2)
          fail("dictionary update sequence element has length " + std::to_string(kv.size()) + "; 2 is required");
        check_hashable(kv[0]);
        dict->set(kv[0], kv[1]);
      }
    }
  }
  for (auto& [k, v] : args.keyword) dict->set(str_value(k), v);
  return dict;
}

std::string strftime_now(const std::string& format) {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  if (format.empty()) return "";
  std::vector<char> buffer(256 + format.size() * 8);
  const size_t n = std::strftime(buffer.data(), buffer.size(), format.c_str(), &local);
  if (n == 0) fail("strftime_now: the format " + text::repr(format) + " gives no text");
  return std::string(buffer.data(), n);
}

}  // namespace

bool has_filter(std::string_view name) { return filters().count(name) > 0; }

bool has_test(std::string_view name) {
  const auto& names = test_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

Value apply_filter(const std::string& name, const Value& value, CallArgs& args) {
  const auto& table = filters();
  const auto it = table.find(name);
  if (it == table.end()) fail("No filter named '" + name + "' found.");
  if (it->second == filter_unsupported)
    fail("the '" + name +
         "' filter is not supported by this interpreter (fedengine's Jinja subset for chat templates)");
  return it->second(value, args);
}

bool apply_test(const std::string& name, const Value& value, CallArgs& args) { return run_test(name, value, args); }

Value global(const std::string& name) {
  if (name == "range") return Value::callable("range", global_range);
  if (name == "dict")
    return Value::callable("dict", [](CallArgs& a) { return Value::dict(dict_from_args("dict", a)); });
  if (name == "namespace")
    return Value::callable("namespace", [](CallArgs& a) {
      auto ns = std::make_shared<Namespace>();
      ns->attributes = *dict_from_args("namespace", a);
      return Value::ns(std::move(ns));
    });
  if (name == "raise_exception")
    return Value::callable("raise_exception", [](CallArgs& a) -> Value {
      Args b = bind("raise_exception", a, {"message"}, 1);
      throw TemplateError(TemplateError::Kind::raised, to_str(*b[0]));
    });
  if (name == "strftime_now")
    return Value::callable("strftime_now", [](CallArgs& a) {
      Args b = bind("strftime_now", a, {"format"}, 1);
      return str_value(strftime_now(str_arg(b[0], "format")));
    });
  if (name == "lipsum" || name == "cycler" || name == "joiner")
    return Value::callable(name, [name](CallArgs&) -> Value {
      fail("the '" + name +
           "' global is not supported by this interpreter (fedengine's Jinja subset for chat templates)");
    });
  return Value::undefined("'" + name + "' is undefined");
}

Value get_attribute(const Value& object, const std::string& name) {
  if (object.is_undefined()) fail_undefined(object);
  if (auto attribute = python_attribute(object, name)) return *attribute;
  if (object.kind() == Value::Kind::dict) {
    if (const Value* v = object.as_dict().find(str_value(name))) return *v;
  }
  return missing_attribute(object, name);
}

Value get_item(const Value& object, const Value& key) {
  using K = Value::Kind;
  if (object.is_undefined()) fail_undefined(object);
  switch (object.kind()) {
    case K::dict: {
      if (key.kind() != K::list && key.kind() != K::dict)
        if (const Value* v = object.as_dict().find(key)) return *v;
      break;
    }
    case K::list:
    case K::tuple: {
      if (!key.is_integral() || object.view_name().rfind("dict_", 0) == 0) break;
      const auto size = static_cast<int64_t>(object.items().size());
      int64_t i = key.as_int();
      if (i < 0) i += size;
      if (i >= 0 && i < size) return object.items()[i];
      return missing_element(object, key);
    }
    case K::string: {
      if (!key.is_integral()) break;
      const std::u32string s = text::decode(object.as_string());
      const auto size = static_cast<int64_t>(s.size());
      int64_t i = key.as_int();
      if (i < 0) i += size;
      if (i >= 0 && i < size) {
        std::string c;
        text::append_utf8(c, s[i]);
        return Value::string(std::move(c), object.is_markup());
      }
      return missing_element(object, key);
    }
    default:
      break;
  }
  if (key.is_string()) {
    if (auto attribute = python_attribute(object, key.as_string())) return *attribute;
    return missing_attribute(object, key.as_string());
  }
  return missing_element(object, key);
}

Value call(const Value& callee, CallArgs& args) {
  switch (callee.kind()) {
    case Value::Kind::callable:
      return callee.as_callable().call(args);
    case Value::Kind::undefined:
      fail_undefined(callee);
    case Value::Kind::loop: {
      const Loop& loop = callee.as_loop();
      if (!loop.recurse) fail("The loop must have the 'recursive' marker to be called recursively.");
      Args a = bind("loop", args, {"iterable"}, 1);
      return loop.recurse(*a[0]);
    }
    default:
      fail("'" + type_name(callee) + "' object is not callable");
  }
}

}  // namespace fe::jinja
