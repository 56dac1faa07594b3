// The wire protocol: bit-exact round trips, the format checked against msgpack's own packer, one
// test per kind of malformed message (each refused with a ProtocolError that says what and where),
// hostile bytes that must never crash the decoder, and check_tensors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#ifndef MSGPACK_NO_BOOST  // the build defines it too; Debian's msgpack-cxx is built without Boost
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>
#include <zlib.h>

#include <cstring>
#include <limits>
#include <random>
#include <variant>

#include "fed/protocol.h"

namespace fe::fed {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

// ---- tensors ----

template <class T>
Tensor make_tensor(Shape shape, DType dtype, const std::vector<T>& values) {
  Tensor t = Tensor::empty(shape, dtype);
  EXPECT_EQ(values.size() * sizeof(T), t.nbytes());
  std::memcpy(t.data(), values.data(), t.nbytes());
  return t;
}

std::string bytes_of(const Tensor& t) { return {static_cast<const char*>(t.data()), t.nbytes()}; }

// One tensor of every dtype, with values whose bits must survive (signed zero, subnormals, extremes),
// plus a scalar and an empty tensor.
std::vector<NamedTensor> tensors_of_every_dtype() {
  const float tiny = std::numeric_limits<float>::denorm_min();
  return {
      {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
       make_tensor<float>({2, 4}, DType::f32, {1.5f, -0.0f, tiny, 3.4e38f, -1e-30f, 0.1f, 2.0f, -7.25f})},
      {"f64", make_tensor<double>({3}, DType::f64, {0.1, -1e300, std::numeric_limits<double>::denorm_min()})},
      {"bf16", make_tensor<uint16_t>({2, 2}, DType::bf16, {0x3f80, 0x8000, 0x0001, 0x7f7f})},
      {"f16", make_tensor<uint16_t>({1, 2, 2}, DType::f16, {0x3c00, 0x8000, 0x0001, 0x7bff})},
      {"i32", make_tensor<int32_t>({2}, DType::i32, {std::numeric_limits<int32_t>::min(), 42})},
      {"i64", make_tensor<int64_t>({2}, DType::i64, {std::numeric_limits<int64_t>::max(), -1})},
      {"scalar", make_tensor<float>({}, DType::f32, {0.5f})},
      {"empty", Tensor::empty({0, 4}, DType::f32)},
  };
}

Message sample_message(MessageType type) {
  Message m{.type = type, .round = 7, .client_id = "client-3"};
  m.config = {{"lr", 3e-4}, {"mu", 2.0}, {"local_epochs", int64_t{2}}, {"offset", int64_t{-5}},
              {"proximal", true}, {"dp", false}, {"reason", std::string("not on the allow-list")}};
  m.metrics = {{"train_loss", 1.25}, {"memory_gb", 3.0}, {"negative", -0.5}};
  m.num_examples = 640;
  m.tensors = tensors_of_every_dtype();
  return m;
}

void expect_same_message(const Message& actual, const Message& expected) {
  EXPECT_EQ(actual.type, expected.type);
  EXPECT_EQ(actual.version, expected.version);
  EXPECT_EQ(actual.round, expected.round);
  EXPECT_EQ(actual.client_id, expected.client_id);
  EXPECT_EQ(actual.config, expected.config);  // variant equality: the type must match too
  EXPECT_EQ(actual.metrics, expected.metrics);
  EXPECT_EQ(actual.num_examples, expected.num_examples);
  ASSERT_EQ(actual.tensors.size(), expected.tensors.size());
  for (size_t i = 0; i < expected.tensors.size(); ++i) {
    SCOPED_TRACE(expected.tensors[i].name);
    const Tensor& a = actual.tensors[i].tensor;
    const Tensor& e = expected.tensors[i].tensor;
    EXPECT_EQ(actual.tensors[i].name, expected.tensors[i].name);
    EXPECT_EQ(a.dtype(), e.dtype());
    EXPECT_EQ(a.shape(), e.shape());
    EXPECT_EQ(a.device(), Device::cpu);
    EXPECT_EQ(bytes_of(a), bytes_of(e));
  }
}

// ---- messages packed by msgpack's own packer, independently of encode() ----

struct Bin {
  std::string bytes;
};
struct Wire;
using WireArray = std::vector<Wire>;
using WireMap = std::vector<std::pair<Wire, Wire>>;  // ordered; may repeat a key on purpose

struct Wire {
  Wire(std::nullptr_t) : value(nullptr) {}
  Wire(const char* text) : value(std::string(text)) {}
  Wire(std::string text) : value(std::move(text)) {}
  Wire(Bin bin) : value(std::move(bin)) {}
  Wire(WireArray array) : value(std::move(array)) {}
  Wire(WireMap map) : value(std::move(map)) {}
  template <class T>
    requires std::is_arithmetic_v<T>
  Wire(T number) {
    if constexpr (std::is_same_v<T, bool>) value = number;
    else if constexpr (std::is_floating_point_v<T>) value = static_cast<double>(number);
    else if constexpr (std::is_signed_v<T>) value = static_cast<int64_t>(number);
    else value = static_cast<uint64_t>(number);
  }

  std::variant<std::nullptr_t, bool, int64_t, uint64_t, double, std::string, Bin, WireArray, WireMap> value;
};

void pack(msgpack::packer<msgpack::sbuffer>& packer, const Wire& wire) {
  std::visit(
      [&packer](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::nullptr_t>) {
          packer.pack_nil();
        } else if constexpr (std::is_same_v<T, Bin>) {
          packer.pack_bin(static_cast<uint32_t>(v.bytes.size()));
          packer.pack_bin_body(v.bytes.data(), static_cast<uint32_t>(v.bytes.size()));
        } else if constexpr (std::is_same_v<T, WireArray>) {
          packer.pack_array(static_cast<uint32_t>(v.size()));
          for (const Wire& element : v) pack(packer, element);
        } else if constexpr (std::is_same_v<T, WireMap>) {
          packer.pack_map(static_cast<uint32_t>(v.size()));
          for (const auto& [key, value] : v) {
            pack(packer, key);
            pack(packer, value);
          }
        } else {
          packer.pack(v);  // note: msgpack-cxx packs a whole double as an integer; tests use fractions
        }
      },
      wire.value);
}

std::string packed(const Wire& wire) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  pack(packer, wire);
  return {buffer.data(), buffer.size()};
}

WireMap& as_map(Wire& wire) { return std::get<WireMap>(wire.value); }

Wire& field(WireMap& map, const std::string& key) {
  for (auto& [k, v] : map)
    if (const auto* name = std::get_if<std::string>(&k.value); name && *name == key) return v;
  throw std::logic_error("test message has no field " + key);
}

void erase_field(WireMap& map, const std::string& key) {
  std::erase_if(map, [&](const auto& kv) { return std::get<std::string>(kv.first.value) == key; });
}

std::string f32_bytes(const std::vector<float>& values) {
  return {reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)};
}

uint32_t zlib_crc32(const std::string& bytes) {
  const auto* data = reinterpret_cast<const Bytef*>(bytes.data());
  return static_cast<uint32_t>(::crc32(0, data, static_cast<uInt>(bytes.size())));
}

constexpr const char* kTensorName = "x.lora_A.weight";

WireMap wire_tensor(const std::string& name, const std::string& dtype, WireArray shape, const std::string& data) {
  return {{"name", name},
          {"dtype", dtype},
          {"shape", std::move(shape)},
          {"crc32", zlib_crc32(data)},
          {"data", Bin{data}}};
}

// A valid fit_result with one f32[2, 4] tensor; each test breaks one thing in it.
WireMap wire_message() {
  return {{"type", "fit_result"},
          {"version", kProtocolVersion},
          {"round", 3},
          {"client_id", "alice"},
          {"config", WireMap{{"lr", 0.25}, {"epochs", 2}, {"prox", true}, {"note", "hi"}}},
          {"metrics", WireMap{{"train_loss", 1.5}}},
          {"num_examples", 40},
          {"tensors", WireArray{wire_tensor(kTensorName, "f32", {2, 4}, f32_bytes({1, 2, 3, 4, 5, 6, 7, 8}))}}};
}

WireMap& first_tensor(WireMap& message) { return as_map(std::get<WireArray>(field(message, "tensors").value)[0]); }

void expect_refused(const std::string& bytes, const std::string& reason) {
  EXPECT_THAT([&] { decode(bytes); }, ThrowsMessage<ProtocolError>(HasSubstr(reason)));
}
void expect_refused(const WireMap& message, const std::string& reason) { expect_refused(packed(message), reason); }

// ---- round trips ----

TEST(ProtocolTest, RoundTripsEveryMessageTypeBitExactly) {
  for (MessageType type : {MessageType::join, MessageType::welcome, MessageType::reject, MessageType::fit,
                           MessageType::fit_result, MessageType::heartbeat, MessageType::shutdown}) {
    SCOPED_TRACE(message_type_name(type));
    const Message original = sample_message(type);
    const std::string bytes = encode(original);
    const Message decoded = decode(bytes);
    expect_same_message(decoded, original);
    EXPECT_EQ(encode(decoded), bytes);
  }
}

TEST(ProtocolTest, RoundTripsAMessageWithOnlyTheRequiredFields) {
  const Message original{.type = MessageType::heartbeat, .round = -1, .client_id = ""};
  expect_same_message(decode(encode(original)), original);
}

TEST(ProtocolTest, ConfigFloatsStayFloatsEvenWhenWhole) {
  Message m;
  m.config = {{"whole", 2.0}, {"zero", 0.0}, {"int", int64_t{2}}};
  const Message decoded = decode(encode(m));
  EXPECT_TRUE(std::holds_alternative<double>(decoded.config.at("whole")));
  EXPECT_TRUE(std::holds_alternative<double>(decoded.config.at("zero")));
  EXPECT_TRUE(std::holds_alternative<int64_t>(decoded.config.at("int")));
}

TEST(ProtocolTest, RoundTripsA64MiBTensorWithoutPerElementEncoding) {
  const int64_t n = int64_t{16} << 20;  // 64 MiB of f32
  Tensor big = Tensor::empty({n / 1024, 1024}, DType::f32);
  for (int64_t i = 0; i < n; ++i) big.as<float>()[i] = static_cast<float>(i % 1000) * 0.001f - 0.5f;
  Message m{.type = MessageType::fit, .round = 1, .client_id = "server"};
  m.tensors = {{"big", big}};

  const std::string bytes = encode(m);
  EXPECT_LT(bytes.size(), big.nbytes() + 256);  // raw bytes plus a small header
  const Message decoded = decode(bytes);
  ASSERT_EQ(decoded.tensors.size(), 1u);
  EXPECT_EQ(decoded.tensors[0].tensor.shape(), big.shape());
  EXPECT_EQ(std::memcmp(decoded.tensors[0].tensor.data(), big.data(), big.nbytes()), 0);
}

TEST(ProtocolTest, EncodeRefusesAnUndefinedTensor) {
  Message m;
  m.tensors = {{"nothing", Tensor()}};
  EXPECT_THAT([&] { encode(m); }, ThrowsMessage<ProtocolError>(HasSubstr("tensor \"nothing\" is not defined")));
}

// ---- the format, checked independently of encode() ----

TEST(ProtocolTest, DecodesAMessagePackedByMsgpackItself) {
  const Message m = decode(packed(wire_message()));
  EXPECT_EQ(m.type, MessageType::fit_result);
  EXPECT_EQ(m.version, kProtocolVersion);
  EXPECT_EQ(m.round, 3);
  EXPECT_EQ(m.client_id, "alice");
  const std::map<std::string, ConfigValue> config = {
      {"lr", 0.25}, {"epochs", int64_t{2}}, {"prox", true}, {"note", std::string("hi")}};
  EXPECT_EQ(m.config, config);
  EXPECT_EQ(m.metrics.at("train_loss"), 1.5);
  EXPECT_EQ(m.metrics.size(), 1u);
  EXPECT_EQ(m.num_examples, 40);
  ASSERT_EQ(m.tensors.size(), 1u);
  EXPECT_EQ(m.tensors[0].name, kTensorName);
  EXPECT_EQ(m.tensors[0].tensor.dtype(), DType::f32);
  EXPECT_EQ(m.tensors[0].tensor.shape(), (Shape{2, 4}));
  EXPECT_EQ(bytes_of(m.tensors[0].tensor), f32_bytes({1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(ProtocolTest, EncodeWritesTheDocumentedMap) {
  Message m{.type = MessageType::fit, .round = 4, .client_id = "bob"};
  m.config = {{"lr", 0.5}};
  m.tensors = {{"t", make_tensor<float>({2}, DType::f32, {1.0f, -2.0f})}};
  const std::string bytes = encode(m);
  const msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size());
  const auto top = handle.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(top.at("type").as<std::string>(), "fit");
  EXPECT_EQ(top.at("version").as<int64_t>(), kProtocolVersion);
  EXPECT_EQ(top.at("round").as<int64_t>(), 4);
  EXPECT_EQ(top.at("client_id").as<std::string>(), "bob");
  const auto config = top.at("config").as<std::map<std::string, double>>();
  EXPECT_EQ(config.at("lr"), 0.5);
  const auto tensors = top.at("tensors").as<std::vector<std::map<std::string, msgpack::object>>>();
  ASSERT_EQ(tensors.size(), 1u);
  const auto& t = tensors[0];
  EXPECT_EQ(t.at("name").as<std::string>(), "t");
  EXPECT_EQ(t.at("dtype").as<std::string>(), "f32");
  EXPECT_EQ(t.at("shape").as<std::vector<int64_t>>(), std::vector<int64_t>{2});
  ASSERT_EQ(t.at("data").type, msgpack::type::BIN);
  const std::string data(t.at("data").via.bin.ptr, t.at("data").via.bin.size);
  EXPECT_EQ(data, f32_bytes({1.0f, -2.0f}));
  EXPECT_EQ(t.at("crc32").as<uint32_t>(), zlib_crc32(data));
}

TEST(ProtocolTest, IgnoresUnknownFieldsForForwardCompatibility) {
  WireMap message = wire_message();
  message.emplace_back("added_in_a_later_release", WireMap{{"nested", WireArray{1, "two", 3.5}}});
  first_tensor(message).emplace_back("quantization", "none");
  EXPECT_EQ(decode(packed(message)).tensors.size(), 1u);
}

TEST(ProtocolTest, OptionalFieldsTakeTheirDefaults) {
  WireMap message = wire_message();
  for (const char* key : {"config", "metrics", "num_examples", "tensors"}) erase_field(message, key);
  const Message m = decode(packed(message));
  EXPECT_TRUE(m.config.empty());
  EXPECT_TRUE(m.metrics.empty());
  EXPECT_EQ(m.num_examples, 0);
  EXPECT_TRUE(m.tensors.empty());
}

TEST(ProtocolTest, MetricsAcceptWholeNumbersSentAsIntegers) {
  WireMap message = wire_message();
  field(message, "metrics") = WireMap{{"tokens", 1234}};
  EXPECT_EQ(decode(packed(message)).metrics.at("tokens"), 1234.0);
}

TEST(ProtocolTest, Crc32MatchesKnownVectors) {
  EXPECT_EQ(crc32(""), 0u);
  EXPECT_EQ(crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(crc32("The quick brown fox jumps over the lazy dog"), 0x414FA339u);
}

// ---- malformed messages: one test per kind ----

TEST(ProtocolTest, RefusesBytesThatAreNotMsgpack) {
  expect_refused(std::string("\xc1"), "not a valid msgpack message (1 bytes)");
  expect_refused(std::string(), "not a valid msgpack message (0 bytes)");
}

TEST(ProtocolTest, RefusesATruncatedMessage) {
  const std::string bytes = packed(wire_message());
  expect_refused(bytes.substr(0, bytes.size() - 1), "insufficient bytes");
}

TEST(ProtocolTest, RefusesTrailingBytes) { expect_refused(packed(wire_message()) + '\0', "1 trailing bytes"); }

TEST(ProtocolTest, RefusesAMessageThatIsNotAMap) {
  expect_refused(packed(WireArray{"fit", 1}), "message: expected a map, got array");
}

TEST(ProtocolTest, RefusesAMissingRequiredField) {
  for (const char* key : {"type", "version", "round", "client_id"}) {
    WireMap message = wire_message();
    erase_field(message, key);
    expect_refused(message, std::string("message: missing field \"") + key + "\"");
  }
}

TEST(ProtocolTest, RefusesAMistypedRequiredField) {
  const struct {
    const char* key;
    Wire value;
    const char* reason;
  } cases[] = {
      {"type", 3, "message field \"type\": expected a string, got int"},
      {"version", "1", "message field \"version\": expected an integer, got str"},
      {"round", 1.5, "message field \"round\": expected an integer, got float"},
      {"round", std::numeric_limits<uint64_t>::max(), "does not fit in a signed 64-bit integer"},
      {"client_id", nullptr, "message field \"client_id\": expected a string, got nil"},
  };
  for (const auto& c : cases) {
    WireMap message = wire_message();
    field(message, c.key) = c.value;
    expect_refused(message, c.reason);
  }
}

TEST(ProtocolTest, RefusesAMistypedOptionalField) {
  const struct {
    const char* key;
    Wire value;
    const char* reason;
  } cases[] = {
      {"config", WireArray{}, "message field \"config\": expected a map, got array"},
      {"config", WireMap{{"lr", WireArray{}}}, "config \"lr\": expected bool, integer, float or string, got array"},
      {"metrics", WireMap{{"loss", "low"}}, "metrics \"loss\": expected a number, got str"},
      {"num_examples", "many", "message field \"num_examples\": expected an integer, got str"},
      {"tensors", WireMap{}, "message field \"tensors\": expected an array, got map"},
  };
  for (const auto& c : cases) {
    WireMap message = wire_message();
    field(message, c.key) = c.value;
    expect_refused(message, c.reason);
  }
}

TEST(ProtocolTest, RefusesANegativeNumberOfExamples) {
  WireMap message = wire_message();
  field(message, "num_examples") = -1;
  expect_refused(message, "message field \"num_examples\": -1 is negative");
}

TEST(ProtocolTest, RefusesAnUnknownMessageType) {
  WireMap message = wire_message();
  field(message, "type") = "bogus";
  expect_refused(message,
                 "unknown message type \"bogus\" (known: join, welcome, reject, fit, fit_result, heartbeat, shutdown)");
}

TEST(ProtocolTest, RefusesAnotherProtocolVersion) {
  WireMap message = wire_message();
  field(message, "version") = kProtocolVersion + 1;
  expect_refused(message, "protocol version 2 is not supported (this build speaks version 1)");
}

TEST(ProtocolTest, RefusesARepeatedKey) {
  WireMap message = wire_message();
  message.emplace_back("round", 4);
  expect_refused(message, "message: key \"round\" appears twice");
}

TEST(ProtocolTest, RefusesANonStringKey) {
  WireMap message = wire_message();
  message.emplace_back(7, "seven");
  expect_refused(message, "message: a key is int, not a string");
}

TEST(ProtocolTest, RefusesATensorEntryThatIsNotAMap) {
  WireMap message = wire_message();
  field(message, "tensors") = WireArray{42};
  expect_refused(message, "tensors[0]: expected a map, got int");
}

TEST(ProtocolTest, RefusesATensorEntryWithoutARequiredField) {
  WireMap message = wire_message();
  erase_field(first_tensor(message), "name");
  expect_refused(message, "tensors[0]: missing field \"name\"");
  for (const char* key : {"dtype", "shape", "crc32", "data"}) {
    message = wire_message();
    erase_field(first_tensor(message), key);
    expect_refused(message, std::string("tensor \"x.lora_A.weight\": missing field \"") + key + "\"");
  }
}

TEST(ProtocolTest, RefusesATensorWithAnEmptyName) {
  WireMap message = wire_message();
  field(first_tensor(message), "name") = "";
  expect_refused(message, "tensors[0] field \"name\": empty tensor name");
}

TEST(ProtocolTest, RefusesAMistypedTensorField) {
  WireMap message = wire_message();
  field(first_tensor(message), "data") = "not a bin";
  expect_refused(message, "tensor \"x.lora_A.weight\" field \"data\": expected a bin, got str");
}

TEST(ProtocolTest, RefusesAnUnknownDtype) {
  WireMap message = wire_message();
  field(first_tensor(message), "dtype") = "f8";
  expect_refused(message, "tensor \"x.lora_A.weight\": unknown dtype \"f8\" (known: f32, f64, bf16, f16, i32, i64)");
}

TEST(ProtocolTest, RefusesANegativeDimension) {
  WireMap message = wire_message();
  field(first_tensor(message), "shape") = WireArray{-2, -4};
  expect_refused(message, "tensor \"x.lora_A.weight\": negative dimension -2");
}

TEST(ProtocolTest, RefusesARankAboveTheMaximum) {
  WireMap message = wire_message();
  field(first_tensor(message), "shape") = WireArray{1, 1, 1, 1, 2, 4};
  expect_refused(message, "tensor \"x.lora_A.weight\": rank 6 exceeds the maximum of 5");
}

TEST(ProtocolTest, RefusesAByteCountThatDoesNotMatchTheShape) {
  WireMap message = wire_message();
  field(first_tensor(message), "data") = Bin{f32_bytes({1, 2, 3, 4, 5, 6})};
  expect_refused(message, "tensor \"x.lora_A.weight\": 24 bytes for f32[2, 4] (expected 32)");
}

TEST(ProtocolTest, RefusesAShapeWhoseByteCountOverflows) {
  const int64_t huge = int64_t{1} << 62;
  for (const WireArray& shape : {WireArray{huge, huge}, WireArray{huge, huge, 0}, WireArray{int64_t{1} << 61, 2}}) {
    WireMap message = wire_message();
    field(first_tensor(message), "shape") = shape;
    expect_refused(message, "is too large (its byte count overflows 64 bits)");
  }
}

TEST(ProtocolTest, RefusesAChecksumMismatch) {
  WireMap message = wire_message();
  const uint32_t good = zlib_crc32(f32_bytes({1, 2, 3, 4, 5, 6, 7, 8}));
  field(first_tensor(message), "crc32") = good ^ 1u;
  expect_refused(message, "tensor \"x.lora_A.weight\": crc32 of the data is");
  field(first_tensor(message), "crc32") = uint64_t{1} << 32;
  expect_refused(message, "field \"crc32\": 4294967296 is not a 32-bit checksum");
}

TEST(ProtocolTest, RefusesNaNAndInfinityInFloatTensors) {
  const auto float_bits = [](auto value) {
    return std::string(reinterpret_cast<const char*>(&value), sizeof value);
  };
  const struct {
    const char* dtype;
    std::string non_finite;  // one element's bytes
    std::string fill;        // a finite element's bytes
    const char* reason;
  } cases[] = {
      {"f32", float_bits(std::numeric_limits<float>::quiet_NaN()), float_bits(1.0f), "element 1 of f32[3] is nan"},
      {"f32", float_bits(-std::numeric_limits<float>::infinity()), float_bits(1.0f), "element 1 of f32[3] is -inf"},
      {"f64", float_bits(std::numeric_limits<double>::infinity()), float_bits(1.0), "element 1 of f64[3] is inf"},
      {"bf16", float_bits(uint16_t{0x7fc0}), float_bits(uint16_t{0x3f80}), "element 1 of bf16[3] is nan"},
      {"f16", float_bits(uint16_t{0x7c00}), float_bits(uint16_t{0x3c00}), "element 1 of f16[3] is inf"},
  };
  for (const auto& c : cases) {
    WireMap message = wire_message();
    first_tensor(message) = wire_tensor(kTensorName, c.dtype, {3}, c.fill + c.non_finite + c.fill);
    expect_refused(message, std::string("tensor \"x.lora_A.weight\": ") + c.reason);
  }
}

// The server answers the sender of a result it cannot use: the header survives a fault past it.
TEST(ProtocolTest, AFaultPastTheHeaderKeepsTheHeader) {
  Message result{.type = MessageType::fit_result, .round = 3, .client_id = "alice", .num_examples = 2};
  Tensor values = Tensor::zeros({2}, DType::f32);
  values.as<float>()[1] = std::numeric_limits<float>::quiet_NaN();
  result.tensors.push_back({"w", values});
  try {
    decode(encode(result));
    ADD_FAILURE() << "a NaN was decoded";
  } catch (const ProtocolError& e) {
    ASSERT_TRUE(e.header.has_value()) << e.what();
    EXPECT_EQ(e.header->type, MessageType::fit_result);
    EXPECT_EQ(e.header->round, 3);
    EXPECT_EQ(e.header->client_id, "alice");
  }
  try {
    decode("not msgpack");
    ADD_FAILURE() << "garbage was decoded";
  } catch (const ProtocolError& e) {
    EXPECT_FALSE(e.header.has_value());
  }
}

TEST(ProtocolTest, RefusesDuplicateTensorNames) {
  WireMap message = wire_message();
  std::get<WireArray>(field(message, "tensors").value).push_back(first_tensor(message));
  expect_refused(message, "tensors[1]: duplicate tensor name \"x.lora_A.weight\"");
}

TEST(ProtocolTest, RefusesNestingDeeperThanTheLimit) {
  Wire nested = WireArray{};
  for (int i = 0; i < 100; ++i) nested = WireArray{nested};
  WireMap message = wire_message();
  message.emplace_back("deep", nested);
  expect_refused(message, "depth size overflow");
}

TEST(ProtocolTest, RefusesLengthPrefixesBeyondTheInput) {
  expect_refused(std::string("\xdd\xff\xff\xff\xff", 5), "array size overflow");  // array32 of 4G elements
  expect_refused(std::string("\xdf\xff\xff\xff\xff", 5), "map size overflow");
  // Strings and bins are referenced in the input, never allocated: a lying length is just short input.
  expect_refused(std::string("\xc6\xff\xff\xff\xff", 5), "insufficient bytes");
}

// ---- hostile bytes never crash ----

// Decodes or refuses with a ProtocolError; any other exception escapes and fails the test.
bool decodes(const std::string& bytes) {
  try {
    decode(bytes);
    return true;
  } catch (const ProtocolError&) {
    return false;
  }
}

TEST(ProtocolTest, RandomBytesAreRefusedWithoutCrashing) {
  std::mt19937_64 random(1);
  for (int i = 0; i < 3000; ++i) {
    std::string bytes(random() % 200, '\0');
    for (char& b : bytes) b = static_cast<char>(random());
    if (i % 2 == 0 && !bytes.empty()) bytes[0] = static_cast<char>(0x80 | (random() % 16));  // a fixmap header
    EXPECT_FALSE(decodes(bytes));
  }
}

TEST(ProtocolTest, EveryTruncationOfAValidMessageIsRefused) {
  const std::string bytes = encode(sample_message(MessageType::fit_result));
  for (size_t length = 0; length < bytes.size(); ++length) EXPECT_FALSE(decodes(bytes.substr(0, length))) << length;
}

TEST(ProtocolTest, BitFlipsOfAValidMessageNeverCrash) {
  const std::string valid = encode(sample_message(MessageType::fit_result));
  std::mt19937_64 random(2);
  for (int i = 0; i < 5000; ++i) {
    std::string bytes = valid;
    for (uint64_t flips = 1 + random() % 3; flips > 0; --flips)
      bytes[random() % bytes.size()] ^= static_cast<char>(1u << (random() % 8));
    if (decodes(bytes)) {
      EXPECT_NO_THROW(decode(encode(decode(bytes))));
    }
  }
}

// ---- check_tensors ----

std::vector<TensorSpec> specs_ab() { return {{"a", {2, 4}, DType::f32}, {"b", {4}, DType::bf16}}; }

Message message_with(std::vector<std::pair<std::string, Tensor>> tensors) {
  Message m{.type = MessageType::fit_result, .client_id = "c"};
  for (auto& [name, t] : tensors) m.tensors.push_back({name, t});
  return m;
}

void expect_mismatch(Message m, const std::string& reason) {
  const std::vector<std::string> before = [&] {
    std::vector<std::string> names;
    for (const NamedTensor& t : m.tensors) names.push_back(t.name);
    return names;
  }();
  EXPECT_THAT([&] { check_tensors(m, specs_ab()); }, ThrowsMessage<ProtocolError>(HasSubstr(reason)));
  ASSERT_EQ(m.tensors.size(), before.size());  // a refused message is left as it was
  for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(m.tensors[i].name, before[i]);
}

TEST(CheckTensorsTest, AcceptsTheExpectedTensorsAndReordersThem) {
  const Tensor a = Tensor::zeros({2, 4}, DType::f32), b = Tensor::zeros({4}, DType::bf16);
  Message m = message_with({{"b", b}, {"a", a}});
  check_tensors(m, specs_ab());
  ASSERT_EQ(m.tensors.size(), 2u);
  EXPECT_EQ(m.tensors[0].name, "a");
  EXPECT_EQ(m.tensors[0].tensor.data(), a.data());
  EXPECT_EQ(m.tensors[1].name, "b");
  EXPECT_EQ(m.tensors[1].tensor.data(), b.data());
}

TEST(CheckTensorsTest, RefusesAMissingTensor) {
  expect_mismatch(message_with({{"a", Tensor::zeros({2, 4}, DType::f32)}}), "missing tensor \"b\"");
}

TEST(CheckTensorsTest, RefusesAnUnexpectedTensor) {
  expect_mismatch(message_with({{"a", Tensor::zeros({2, 4}, DType::f32)},
                                {"b", Tensor::zeros({4}, DType::bf16)},
                                {"c", Tensor::zeros({1}, DType::f32)}}),
                  "unexpected tensor \"c\"");
}

TEST(CheckTensorsTest, RefusesAWrongShape) {
  expect_mismatch(message_with({{"a", Tensor::zeros({4, 2}, DType::f32)}, {"b", Tensor::zeros({4}, DType::bf16)}}),
                  "tensor \"a\" is f32[4, 2], expected f32[2, 4]");
}

TEST(CheckTensorsTest, RefusesAWrongDtype) {
  expect_mismatch(message_with({{"a", Tensor::zeros({2, 4}, DType::f32)}, {"b", Tensor::zeros({4}, DType::f32)}}),
                  "tensor \"b\" is f32[4], expected bf16[4]");
}

TEST(CheckTensorsTest, ListsTheFirstFewOfManyProblems) {
  std::vector<TensorSpec> many;
  for (int i = 0; i < 20; ++i) many.push_back({"t" + std::to_string(i), {1}, DType::f32});
  Message empty;
  EXPECT_THAT([&] { check_tensors(empty, many); },
              ThrowsMessage<ProtocolError>(HasSubstr("missing tensor \"t7\"; and 12 more")));
}

}  // namespace
}  // namespace fe::fed
