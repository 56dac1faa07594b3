// fed/protocol.cpp — msgpack encoding and defensive decoding of federation messages.
//
// encode() packs into one std::string reserved for the tensor payloads, which dominate; each
// tensor's bytes are appended once as a bin body. decode() unpacks with size limits tied to the
// input length, with strings and bins referenced in place (the input is not copied), then reads
// the tree field by field so that every ProtocolError names the field or tensor at fault.
#include "fed/protocol.h"

#ifndef MSGPACK_NO_BOOST  // the build defines it too; Debian's msgpack-cxx is built without Boost
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>
#include <zlib.h>

#include <array>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <set>

namespace fe::fed {
namespace {

constexpr std::array kMessageTypes = {MessageType::join,       MessageType::welcome,   MessageType::reject,
                                      MessageType::fit,        MessageType::fit_result, MessageType::heartbeat,
                                      MessageType::shutdown};
constexpr std::array kDTypes = {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64};

template <class Enum, size_t N>
std::optional<Enum> parse_name(const std::array<Enum, N>& values, const char* (*name_of)(Enum), std::string_view text) {
  for (Enum value : values)
    if (text == name_of(value)) return value;
  return std::nullopt;
}

template <class Enum, size_t N>
std::string joined_names(const std::array<Enum, N>& values, const char* (*name_of)(Enum)) {
  std::string names;
  for (Enum value : values) names += (names.empty() ? "" : ", ") + std::string(name_of(value));
  return names;
}

std::string in_quotes(std::string_view text) { return "\"" + std::string(text) + "\""; }

std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08" PRIx32, value);
  return text;
}

std::string describe(DType dtype, const Shape& shape) { return dtype_name(dtype) + shape.str(); }

[[noreturn]] void fail(const std::string& what) { throw ProtocolError(what); }

// ---- encoding ----

// msgpack's packer writes through any type with write(); this one appends to the output string.
class StringSink {
 public:
  explicit StringSink(std::string& out) : out_(out) {}
  void write(const char* data, size_t size) { out_.append(data, size); }

 private:
  std::string& out_;
};

class Encoder {
 public:
  explicit Encoder(std::string& out) : sink_(out), packer_(sink_) {}

  void message(const Message& m) {
    packer_.pack_map(8);
    str("type"); str(message_type_name(m.type));
    str("version"); packer_.pack_int64(m.version);
    str("round"); packer_.pack_int64(m.round);
    str("client_id"); str(m.client_id);
    str("config"); packer_.pack_map(static_cast<uint32_t>(m.config.size()));
    for (const auto& [key, value] : m.config) {
      str(key);
      config_value(value);
    }
    str("metrics"); packer_.pack_map(static_cast<uint32_t>(m.metrics.size()));
    for (const auto& [key, value] : m.metrics) {
      str(key);
      float64(value);
    }
    str("num_examples"); packer_.pack_int64(m.num_examples);
    str("tensors"); packer_.pack_array(static_cast<uint32_t>(m.tensors.size()));
    for (const NamedTensor& t : m.tensors) tensor(t);
  }

 private:
  void str(std::string_view text) {
    packer_.pack_str(static_cast<uint32_t>(text.size()));
    packer_.pack_str_body(text.data(), text.size());
  }

  // msgpack-cxx packs integral doubles (2.0) as integers, which would turn a float config value
  // into an int on the other side; floats are therefore always written as float64 (0xcb, then the
  // IEEE bits big-endian), as other msgpack implementations do.
  void float64(double value) {
    uint64_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    char bytes[9] = {static_cast<char>(0xcb)};
    for (int i = 0; i < 8; ++i) bytes[1 + i] = static_cast<char>(bits >> (56 - 8 * i));
    sink_.write(bytes, sizeof bytes);
  }

  void config_value(const ConfigValue& value) {
    std::visit(
        [this](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, bool>) v ? packer_.pack_true() : packer_.pack_false();
          else if constexpr (std::is_same_v<T, int64_t>) packer_.pack_int64(v);
          else if constexpr (std::is_same_v<T, double>) float64(v);
          else str(v);
        },
        value);
  }

  void tensor(const NamedTensor& named) {
    const Tensor& t = named.tensor;
    const std::string where = "encode: tensor " + in_quotes(named.name);
    if (!t.defined()) fail(where + " is not defined");
    if (t.device() != Device::cpu)
      fail(where + " lives on " + device_name(t.device()) + "; messages carry CPU tensors");
    const std::string_view bytes(static_cast<const char*>(t.data()), t.nbytes());
    if (bytes.size() > std::numeric_limits<uint32_t>::max())
      fail(where + ": " + std::to_string(bytes.size()) + " bytes exceed the 4 GiB of one msgpack bin");

    packer_.pack_map(5);
    str("name"); str(named.name);
    str("dtype"); str(dtype_name(t.dtype()));
    str("shape"); packer_.pack_array(static_cast<uint32_t>(t.shape().rank()));
    for (int64_t d : t.shape()) packer_.pack_int64(d);
    str("crc32"); packer_.pack_uint32(crc32(bytes));
    str("data"); packer_.pack_bin(static_cast<uint32_t>(bytes.size()));
    packer_.pack_bin_body(bytes.data(), static_cast<uint32_t>(bytes.size()));
  }

  StringSink sink_;
  msgpack::packer<StringSink> packer_;
};

size_t encoded_size_hint(const Message& m) {
  size_t size = 1024;
  for (const NamedTensor& t : m.tensors) size += t.name.size() + 64 + t.tensor.nbytes();
  return size;
}

// ---- decoding: msgpack values ----

const char* kind_name(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "bool";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return "int";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "str";
    case msgpack::type::BIN: return "bin";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    case msgpack::type::EXT: return "ext";
  }
  return "?";
}

[[noreturn]] void fail_type(const msgpack::object& o, const char* expected, const std::string& where) {
  fail(where + ": expected " + expected + ", got " + kind_name(o));
}

void expect(const msgpack::object& o, msgpack::type::object_type type, const char* expected, const std::string& where) {
  if (o.type != type) fail_type(o, expected, where);
}

std::string_view as_string(const msgpack::object& o, const std::string& where) {
  expect(o, msgpack::type::STR, "a string", where);
  return {o.via.str.ptr, o.via.str.size};
}

std::string_view as_bin(const msgpack::object& o, const std::string& where) {
  expect(o, msgpack::type::BIN, "a bin", where);
  return {o.via.bin.ptr, o.via.bin.size};
}

int64_t as_int64(const msgpack::object& o, const std::string& where) {
  if (o.type == msgpack::type::NEGATIVE_INTEGER) return o.via.i64;
  expect(o, msgpack::type::POSITIVE_INTEGER, "an integer", where);
  if (o.via.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    fail(where + ": " + std::to_string(o.via.u64) + " does not fit in a signed 64-bit integer");
  return static_cast<int64_t>(o.via.u64);
}

bool is_float(const msgpack::object& o) {
  return o.type == msgpack::type::FLOAT32 || o.type == msgpack::type::FLOAT64;
}

// Metrics are plain numbers: other implementations may send a whole number as an integer.
double as_number(const msgpack::object& o, const std::string& where) {
  if (is_float(o)) return o.via.f64;
  if (o.type != msgpack::type::POSITIVE_INTEGER && o.type != msgpack::type::NEGATIVE_INTEGER)
    fail_type(o, "a number", where);
  return static_cast<double>(as_int64(o, where));
}

ConfigValue as_config_value(const msgpack::object& o, const std::string& where) {
  switch (o.type) {
    case msgpack::type::BOOLEAN: return o.via.boolean;
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return as_int64(o, where);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return o.via.f64;
    case msgpack::type::STR: return std::string(as_string(o, where));
    default: fail_type(o, "bool, integer, float or string", where);
  }
}

// A msgpack map read as named fields: string keys, each at most once (a repeated key would let
// two readers of one message see different values). `where` names the map in error messages.
class Fields {
 public:
  Fields(const msgpack::object& map, std::string where) : where_(std::move(where)) {
    expect(map, msgpack::type::MAP, "a map", where_);
    for (uint32_t i = 0; i < map.via.map.size; ++i) {
      const msgpack::object_kv& kv = map.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR) fail(where_ + ": a key is " + kind_name(kv.key) + ", not a string");
      const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
      if (!entries_.emplace(key, &kv.val).second) fail(where_ + ": key " + in_quotes(key) + " appears twice");
    }
  }

  // Later errors say e.g. `tensor "x"` once the name is known, instead of `tensors[3]`.
  void rename(std::string where) { where_ = std::move(where); }
  const std::string& where() const { return where_; }
  std::string where(std::string_view key) const { return where_ + " field " + in_quotes(key); }

  const msgpack::object* optional(std::string_view key) const {
    const auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : it->second;
  }
  const msgpack::object& required(std::string_view key) const {
    const msgpack::object* value = optional(key);
    if (value == nullptr) fail(where_ + ": missing field " + in_quotes(key));
    return *value;
  }

  auto begin() const { return entries_.begin(); }
  auto end() const { return entries_.end(); }

 private:
  std::string where_;
  std::map<std::string_view, const msgpack::object*> entries_;
};

// ---- decoding: the message ----

// Nesting the format needs: message map → tensors array → tensor map → shape array. The rest
// leaves room for forward-compatible fields.
constexpr size_t kMaxNesting = 16;

// Strings and bins point into the input, which outlives the object tree: decode() copies what it keeps.
bool reference_in_place(msgpack::type::object_type, size_t, void*) { return true; }

msgpack::object_handle unpack_message(std::string_view bytes) {
  // Every element takes at least one byte and every map entry two, so no count may exceed the
  // input length: a lying length prefix cannot make msgpack allocate more than a small multiple
  // of the input.
  const size_t n = bytes.size();
  const msgpack::unpack_limit limit(/*array=*/n, /*map=*/n / 2, /*str=*/n, /*bin=*/n, /*ext=*/n, kMaxNesting);
  size_t offset = 0;
  msgpack::object_handle handle;
  try {
    handle = msgpack::unpack(bytes.data(), n, offset, reference_in_place, nullptr, limit);
  } catch (const msgpack::unpack_error& e) {
    fail("not a valid msgpack message (" + std::to_string(n) + " bytes): " + e.what());
  }
  if (offset != n) fail("message: " + std::to_string(n - offset) + " trailing bytes after the msgpack map");
  return handle;
}

int64_t decode_version(const Fields& fields) {
  const int64_t version = as_int64(fields.required("version"), fields.where("version"));
  if (version != kProtocolVersion)
    fail(fields.where("version") + ": protocol version " + std::to_string(version) +
         " is not supported (this build speaks version " + std::to_string(kProtocolVersion) + ")");
  return version;
}

MessageType decode_type(const Fields& fields) {
  const std::string_view name = as_string(fields.required("type"), fields.where("type"));
  const std::optional<MessageType> type = parse_name(kMessageTypes, message_type_name, name);
  if (!type)
    fail(fields.where("type") + ": unknown message type " + in_quotes(name) + " (known: " +
         joined_names(kMessageTypes, message_type_name) + ")");
  return *type;
}

std::map<std::string, ConfigValue> decode_config(const msgpack::object& o, const std::string& where) {
  std::map<std::string, ConfigValue> config;
  for (const auto& [key, value] : Fields(o, where))
    config.emplace(key, as_config_value(*value, "config " + in_quotes(key)));
  return config;
}

std::map<std::string, double> decode_metrics(const msgpack::object& o, const std::string& where) {
  std::map<std::string, double> metrics;
  for (const auto& [key, value] : Fields(o, where))
    metrics.emplace(key, as_number(*value, "metrics " + in_quotes(key)));
  return metrics;
}

DType decode_dtype(const Fields& fields) {
  const std::string_view name = as_string(fields.required("dtype"), fields.where("dtype"));
  const std::optional<DType> dtype = parse_name(kDTypes, dtype_name, name);
  if (!dtype)
    fail(fields.where() + ": unknown dtype " + in_quotes(name) + " (known: " + joined_names(kDTypes, dtype_name) + ")");
  return *dtype;
}

Shape decode_shape(const Fields& fields) {
  const std::string where = fields.where("shape");
  const msgpack::object& dims = fields.required("shape");
  expect(dims, msgpack::type::ARRAY, "an array", where);
  if (dims.via.array.size > static_cast<uint32_t>(Shape::kMaxRank))
    fail(fields.where() + ": rank " + std::to_string(dims.via.array.size) + " exceeds the maximum of " +
         std::to_string(Shape::kMaxRank));
  Shape shape;
  for (uint32_t i = 0; i < dims.via.array.size; ++i) {
    const int64_t d = as_int64(dims.via.array.ptr[i], where);
    if (d < 0) fail(fields.where() + ": negative dimension " + std::to_string(d) + " in the shape");
    shape.push_back(d);
  }
  return shape;
}

// Bytes a tensor of this shape and dtype holds; nullopt when that overflows 64 bits (only a
// hostile shape does; Shape::numel would overflow on it too).
std::optional<uint64_t> checked_nbytes(const Shape& shape, DType dtype) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  return n;
}

void check_byte_count(std::string_view data, DType dtype, const Shape& shape, const std::string& where) {
  const std::optional<uint64_t> expected = checked_nbytes(shape, dtype);
  if (!expected) fail(where + ": " + describe(dtype, shape) + " is too large (its byte count overflows 64 bits)");
  if (data.size() != *expected)
    fail(where + ": " + std::to_string(data.size()) + " bytes for " + describe(dtype, shape) + " (expected " +
         std::to_string(*expected) + ")");
}

void check_crc32(const Fields& fields, std::string_view data) {
  const int64_t claimed = as_int64(fields.required("crc32"), fields.where("crc32"));
  if (claimed < 0 || claimed > std::numeric_limits<uint32_t>::max())
    fail(fields.where("crc32") + ": " + std::to_string(claimed) + " is not a 32-bit checksum");
  const uint32_t actual = crc32(data);
  if (actual != static_cast<uint32_t>(claimed))
    fail(fields.where() + ": crc32 of the data is " + hex32(actual) + ", the message says " +
         hex32(static_cast<uint32_t>(claimed)) + " (corrupted in transit?)");
}

NamedTensor decode_tensor(const msgpack::object& entry, size_t index) {
  Fields fields(entry, "tensors[" + std::to_string(index) + "]");
  std::string name(as_string(fields.required("name"), fields.where("name")));
  if (name.empty()) fail(fields.where("name") + ": empty tensor name");
  fields.rename("tensor " + in_quotes(name));

  const DType dtype = decode_dtype(fields);
  const Shape shape = decode_shape(fields);
  const std::string_view data = as_bin(fields.required("data"), fields.where("data"));
  check_byte_count(data, dtype, shape, fields.where());
  check_crc32(fields, data);

  Tensor tensor = Tensor::empty(shape, dtype);
  if (!data.empty()) std::memcpy(tensor.data(), data.data(), data.size());
  if (const std::optional<NonFiniteElement> bad = find_non_finite(tensor))
    fail(fields.where() + ": element " + std::to_string(bad->index) + " of " + describe(dtype, shape) + " is " +
         std::to_string(bad->value));
  return {std::move(name), std::move(tensor)};
}

std::vector<NamedTensor> decode_tensors(const msgpack::object& o, const std::string& where) {
  expect(o, msgpack::type::ARRAY, "an array", where);
  std::vector<NamedTensor> tensors;
  tensors.reserve(o.via.array.size);
  std::set<std::string> names;
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    NamedTensor t = decode_tensor(o.via.array.ptr[i], i);
    if (!names.insert(t.name).second)
      fail("tensors[" + std::to_string(i) + "]: duplicate tensor name " + in_quotes(t.name));
    tensors.push_back(std::move(t));
  }
  return tensors;
}

int64_t decode_num_examples(const msgpack::object& o, const std::string& where) {
  const int64_t n = as_int64(o, where);
  if (n < 0) fail(where + ": " + std::to_string(n) + " is negative");
  return n;
}

// ---- check_tensors ----

// One ProtocolError for all mismatches, listing the first few: a client built for other LoRA
// targets may miss hundreds of tensors, and the log line should stay readable.
[[noreturn]] void fail_mismatches(const std::vector<std::string>& problems) {
  constexpr size_t kListed = 8;
  std::string what = "tensors do not match the model: ";
  for (size_t i = 0; i < problems.size() && i < kListed; ++i) what += (i ? "; " : "") + problems[i];
  if (problems.size() > kListed) what += "; and " + std::to_string(problems.size() - kListed) + " more";
  fail(what);
}

}  // namespace

const char* message_type_name(MessageType type) {
  switch (type) {
    case MessageType::join: return "join";
    case MessageType::welcome: return "welcome";
    case MessageType::reject: return "reject";
    case MessageType::fit: return "fit";
    case MessageType::fit_result: return "fit_result";
    case MessageType::heartbeat: return "heartbeat";
    case MessageType::shutdown: return "shutdown";
  }
  return "?";
}

std::string encode(const Message& message) {
  std::string out;
  out.reserve(encoded_size_hint(message));
  Encoder(out).message(message);
  return out;
}

Message decode(std::string_view bytes) {
  const msgpack::object_handle handle = unpack_message(bytes);
  const Fields fields(handle.get(), "message");
  Message m;
  // The version first: a message of another version may differ in any other field.
  m.version = decode_version(fields);
  m.type = decode_type(fields);
  m.round = as_int64(fields.required("round"), fields.where("round"));
  m.client_id = as_string(fields.required("client_id"), fields.where("client_id"));
  try {
    if (const msgpack::object* o = fields.optional("config")) m.config = decode_config(*o, fields.where("config"));
    if (const msgpack::object* o = fields.optional("metrics")) m.metrics = decode_metrics(*o, fields.where("metrics"));
    if (const msgpack::object* o = fields.optional("num_examples"))
      m.num_examples = decode_num_examples(*o, fields.where("num_examples"));
    if (const msgpack::object* o = fields.optional("tensors")) m.tensors = decode_tensors(*o, fields.where("tensors"));
  } catch (ProtocolError& e) {
    e.header = MessageHeader{.type = m.type, .round = m.round, .client_id = m.client_id};
    throw;
  }
  return m;
}

void check_tensors(Message& message, const std::vector<TensorSpec>& expected) {
  std::map<std::string_view, NamedTensor*> unmatched;
  std::vector<std::string> problems;
  for (NamedTensor& t : message.tensors)
    if (!unmatched.emplace(t.name, &t).second) problems.push_back("tensor " + in_quotes(t.name) + " appears twice");

  std::vector<NamedTensor*> matched;
  matched.reserve(expected.size());
  for (const TensorSpec& spec : expected) {
    const auto it = unmatched.find(spec.name);
    if (it == unmatched.end()) {
      problems.push_back("missing tensor " + in_quotes(spec.name));
      continue;
    }
    const Tensor& t = it->second->tensor;
    if (t.dtype() != spec.dtype || !(t.shape() == spec.shape))
      problems.push_back("tensor " + in_quotes(spec.name) + " is " + describe(t.dtype(), t.shape()) + ", expected " +
                         describe(spec.dtype, spec.shape));
    matched.push_back(it->second);
    unmatched.erase(it);
  }
  for (const auto& [name, t] : unmatched) problems.push_back("unexpected tensor " + in_quotes(name));
  if (!problems.empty()) fail_mismatches(problems);

  // Only now, with every check passed, is the message changed.
  std::vector<NamedTensor> ordered;
  ordered.reserve(matched.size());
  for (NamedTensor* t : matched) ordered.push_back(std::move(*t));
  message.tensors = std::move(ordered);
}

uint32_t crc32(std::string_view bytes) {
  return static_cast<uint32_t>(::crc32_z(0, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

}  // namespace fe::fed
