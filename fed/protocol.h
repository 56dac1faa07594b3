// fed/protocol.h — the messages a federation exchanges, and their msgpack encoding.
//
// Every message is one msgpack map:
//   {"type": str, "version": int, "round": int, "client_id": str,
//    "config": {str: bool|int|float|str},      // round configuration pushed by the server
//    "metrics": {str: float},                  // e.g. train_loss, resources
//    "num_examples": int,
//    "tensors": [{"name": str, "dtype": str, "shape": [int], "crc32": int, "data": bin}, ...]}
// Tensors travel as raw little-endian bytes in msgpack bin payloads (no per-element encoding);
// crc32 (zlib's polynomial) covers the data bytes. There is no size limit short of memory: a bin
// holds up to 4 GiB, and a message may hold any number of tensors.
//
// decode() is defensive: it never crashes on arbitrary bytes and throws ProtocolError with a
// reason for anything malformed (not msgpack, not a map, unknown type or version, missing or
// mistyped fields, unknown dtype, byte count ≠ shape × dtype size, checksum mismatch, NaN/Inf in
// a float tensor, duplicate tensor names), with the header when the fault lies past it
// (ProtocolError::header). check_tensors() then compares the tensors with what
// the model expects (names, shapes, dtypes).
//
// Compatibility: type, version, round and client_id are required; a missing config, metrics,
// num_examples or tensors takes Message's default. Unknown keys (in the message or in a tensor
// entry) are ignored, so a newer peer may add fields without a version bump; a repeated key,
// trailing bytes or a negative num_examples are refused. Floats in config and metrics keep their
// type (always float64 on the wire); metrics also accept integers.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "engine/tensor.h"

namespace fe::fed {

inline constexpr int64_t kProtocolVersion = 1;

enum class MessageType {
  join,        // client → server: I am client_id; metrics carry dataset size, memory, ranks
  welcome,     // server → client: accepted (config carries the run's settings)
  reject,      // server → client: refused; config["reason"] says why
  fit,         // server → client: train this round from the global adapter in tensors
  fit_result,  // client → server: the trained adapter (tensors), num_examples, metrics
  heartbeat,   // client → server: alive; metrics carry resources and progress
  shutdown,    // server → client: the run is over (or client → server: I am leaving)
};
const char* message_type_name(MessageType type);

using ConfigValue = std::variant<bool, int64_t, double, std::string>;

struct NamedTensor {
  std::string name;
  Tensor tensor;  // CPU
};

struct Message {
  MessageType type = MessageType::heartbeat;
  int64_t version = kProtocolVersion;
  int64_t round = -1;
  std::string client_id;
  std::map<std::string, ConfigValue> config;
  std::map<std::string, double> metrics;
  int64_t num_examples = 0;
  std::vector<NamedTensor> tensors;
};

// Who sent a message and what it was about: decode() reads these fields first.
struct MessageHeader {
  MessageType type = MessageType::heartbeat;
  int64_t round = -1;
  std::string client_id;
};

class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  // From decode(): set when the fault lies past the header, so the receiver can still answer the
  // sender (a result with a NaN gets its reject).
  std::optional<MessageHeader> header;
};

std::string encode(const Message& message);
Message decode(std::string_view bytes);

// What a tensor in a message must look like.
struct TensorSpec {
  std::string name;
  Shape shape;
  DType dtype = DType::f32;
};
// Throws ProtocolError unless the message holds exactly these tensors (in any order), with these
// shapes and dtypes; reorders message.tensors to the order of `expected`.
void check_tensors(Message& message, const std::vector<TensorSpec>& expected);

uint32_t crc32(std::string_view bytes);

}  // namespace fe::fed
