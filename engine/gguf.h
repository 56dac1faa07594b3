// engine/gguf.h — reading GGUF files, the checkpoint format of llama.cpp and ggml.
//
// File format (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), little-endian:
//   magic "GGUF", version (uint32: 2 or 3), tensor count (uint64), key/value count (uint64);
//   the key/values: key (string), value type (uint32), value — a scalar (u8..u64, i8..i64, f32,
//   f64, bool), a string (uint64 length + UTF-8 bytes), or an array (element type uint32, count
//   uint64, the elements; arrays may nest);
//   the tensor infos: name (string), rank (uint32, at most 4), the dims (uint64 each, ne[0] first:
//   ne[0] is the innermost, contiguous dimension), the ggml type (uint32), the data offset (uint64,
//   relative to the data section, a multiple of the alignment);
//   padding to `general.alignment` (default 32), then the data section.
// A GGUF tensor of ne [576, 49152] is the row-major [49152, 576] matrix of PyTorch/HF.
// Version 1 (32-bit counts, 2023) and big-endian files are rejected with the reason.
//
// GgufFile maps the file read-only (mmap) and validates all of it up front: every length, count,
// dimension, type and offset is checked against the file size before it is used, so a corrupt or
// truncated file raises fe::Error naming the file, the key or tensor and what is wrong — never a
// crash. Memory follows the bytes the file really holds, never a count it merely claims: nothing is
// reserved before the bytes behind it are known to exist, and arrays of scalars (token types,
// scores) stay packed as their file bytes (a u8 element costs 1 byte, not a GgufValue), so the
// parsed header takes at most about ten times the file's size (the worst case: a file of nothing
// but tiny key/values; empty strings cost 4×, tensor infos 6×). Tensor data stays in the mapping
// until dequantized (engine/gguf_dequantize.h); GgufTensorInfo::data is valid while the GgufFile
// lives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kernels/view.h"

namespace fe {

// Metadata value types, numbered as in the file.
enum class GgufValueType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};
const char* gguf_value_type_name(GgufValueType type);  // "u32", "string", ...; "unknown" for others
bool gguf_integer_type(GgufValueType type);            // u8..i64 (not bool)

struct GgufValue;

// An array value. Scalar elements keep the little-endian bytes the file stores and are decoded by
// at(); strings and nested arrays are held decoded.
struct GgufArray {
  GgufValueType element_type = GgufValueType::u8;
  uint64_t count = 0;
  std::vector<std::byte> scalar_bytes;  // scalar element types: count × the element's size
  std::vector<std::string> strings;     // element_type string
  std::vector<GgufArray> arrays;        // element_type array

  uint64_t size() const { return count; }
  GgufValue at(uint64_t index) const;  // element `index` as a value of element_type; Error past size()
};

// One metadata value: unsigned integers as uint64_t, signed as int64_t, f32/f64 as double,
// bool, string, or an array. The array is held behind a pointer so that a value is no larger than a
// string: key/values are the densest thing a file can hold, and each one costs a GgufValue.
struct GgufValue {
  GgufValueType type = GgufValueType::u8;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<const GgufArray>> value;

  bool is_integer() const;
  bool is_number() const;  // an integer or a float
  // Conversions for the matching types; nullopt for another type or an integer out of int64 range.
  std::optional<int64_t> as_int() const;
  std::optional<double> as_double() const;  // f32 values as their shortest decimal (1e-05, not 9.99e-06)
  const std::string* as_string() const;
  const GgufArray* as_array() const;
  std::string type_str() const;  // "u32", "array of string", ...
};

// ggml tensor types, numbered as in ggml.h. Values outside this list are kept as read and named
// "type N".
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

// Elements per block and bytes per block of a ggml type (F32: 1 and 4; Q4_K: 256 and 144).
struct GgmlTypeLayout {
  const char* name;
  int64_t block_elements;
  int64_t block_bytes;
};
// nullptr for a type ggml does not define (the file is then unreadable: its size is unknown).
const GgmlTypeLayout* ggml_type_layout(GgmlType type);
std::string ggml_type_name(GgmlType type);  // "Q4_K", or "type 99"

struct GgufTensorInfo {
  std::string name;
  GgmlType type;
  std::vector<int64_t> ne;  // GGUF order: ne[0] innermost
  uint64_t offset;          // from the start of the data section
  const std::byte* data;    // into the owning GgufFile's mapping
  uint64_t nbytes;

  int64_t numel() const;
  Shape shape() const;  // row-major (PyTorch/HF) order: ne reversed
};

class GgufFile {
 public:
  // Maps and validates the whole file; fe::Error naming `path` on anything malformed.
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // where the data section starts
  uint64_t file_size() const { return file_size_; }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }  // file order
  const GgufValue* find(std::string_view key) const;                                            // nullptr when absent
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }                       // file order
  const GgufTensorInfo* find_tensor(std::string_view name) const;                               // nullptr when absent

  // Typed reads of metadata: nullopt when the key is absent, an Error naming the file, the key,
  // its type and the expected one when it holds something else.
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;    // any integer type
  std::optional<double> get_double(std::string_view key) const;  // any number
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::vector<std::string>> get_string_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;
  std::optional<std::vector<double>> get_double_array(std::string_view key) const;

  // "GGUF PATH: " + what, as every error about this file starts.
  [[noreturn]] void fail(const std::string& what) const;
  [[noreturn]] void fail_key(std::string_view key, const std::string& what) const;
  [[noreturn]] void fail_tensor(std::string_view name, const std::string& what) const;

 private:
  void map_file();
  void parse();

  std::string path_;
  std::shared_ptr<const std::byte> mapping_;
  uint64_t file_size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace fe
