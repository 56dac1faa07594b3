// engine/safetensors.h — reading and writing Hugging Face safetensors checkpoints.
//
// File format (https://github.com/huggingface/safetensors), all integers little-endian:
//   [8 bytes]  N, the length of the header in bytes (uint64)
//   [N bytes]  a JSON object, UTF-8. Each key is a tensor name mapping to
//                {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
//              with [begin, end) a byte range relative to the data start (byte 8 + N). The optional
//              key "__metadata__" maps to an object of string values.
//   [rest]     the tensors' raw bytes, row-major, packed back to back.
// Supported dtypes: F32, F64, BF16, F16, I32, I64 (fe::DType f32, f64, bf16, f16, i32, i64).
// write_safetensors pads the header with spaces so the data start is 8-byte aligned; files from
// other writers need not be aligned, and the reader accepts them.
//
// Memory ownership:
//   - SafetensorsFile maps its file read-only (mmap); every TensorInfo::data points into that
//     mapping and is valid only while the SafetensorsFile (or a copy of it: copies share the
//     mapping) lives. Nothing is copied until a tensor is loaded, so opening a multi-gigabyte
//     checkpoint is cheap. The file must not be truncated while mapped (access would raise SIGBUS).
//   - SafetensorsCheckpoint owns the SafetensorsFile of each of its shards.
//   - SafetensorsCheckpoint::load returns a new CPU Tensor that owns a converted copy and outlives
//     the checkpoint.
//
// Every malformed input raises fe::Error naming the file (and the tensor, where one is involved).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tensor.h"
#include "kernels/view.h"

namespace fe {

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  const void* data;  // into the owning SafetensorsFile's mapping
  size_t nbytes;
  std::string file;  // path of the .safetensors file holding the tensor
};

// One .safetensors file, memory-mapped read-only (mmap), valid as long as the object lives.
class SafetensorsFile {
 public:
  // Maps and validates the whole header; throws fe::Error naming `path` on any malformed input.
  explicit SafetensorsFile(const std::string& path);

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in header order
  const TensorInfo* find(std::string_view name) const;                 // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // "__metadata__"
  const std::string& path() const { return path_; }

 private:
  void map_file();
  void parse_header();

  std::string path_;
  std::shared_ptr<const std::byte> mapping_;  // unmapped when the last copy goes
  size_t mapping_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_by_name_;  // into tensors_
  std::map<std::string, std::string> metadata_;
};

// A HF checkpoint: a directory holding model.safetensors, or shards listed in
// model.safetensors.index.json ("weight_map": name -> shard file), or a single .safetensors file path.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::string& dir_or_file);

  const TensorInfo* find(std::string_view name) const;  // nullptr when absent
  std::vector<std::string> names() const;                // sorted
  // The tensor converted to `dtype` in a new CPU Tensor. Throws fe::Error naming the tensor, the
  // checkpoint path and (for a shape mismatch) both shapes when it is missing or its shape differs
  // from `expected`, and naming the element when a floating tensor holds NaN or ±inf (a diverged
  // run's weights would otherwise train or merge on silently).
  Tensor load(std::string_view name, const Shape& expected, DType dtype) const;

 private:
  void open_sharded(const std::string& index_path);
  void add_every_tensor_of(const SafetensorsFile& file);
  [[noreturn]] void throw_missing(std::string_view name) const;

  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;  // owned; TensorInfos point into them
  std::map<std::string, const TensorInfo*, std::less<>> tensors_by_name_;
};

// Writes tensors (CPU views, any DType) to `path` atomically: to path + ".tmp" then rename, so a
// crash never leaves a half-written file. Metadata goes in "__metadata__". Tensors are written in
// the given order.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, View>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
// Named tensors to and from a safetensors file (checkpoints, adapters read without their model):
// GPU tensors are written from a host copy; reading keeps each tensor's stored dtype, in name
// order, on the host.
void write_named_tensors(const std::string& path, const NamedTensors& tensors);
NamedTensors read_named_tensors(const std::string& path);
// Each tensor of `into` takes the values of the tensor of `from` with its name (converted to its
// dtype and device, in place); an Error names `source` and a tensor that is missing or has another
// shape. How checkpoints are restored into tensors a model or trainer already shares.
void copy_named_tensors(const NamedTensors& into, const NamedTensors& from, const std::string& source);
// Throws fe::Error naming `what` (a file or directory about to be written), the tensor and its first
// NaN or ±inf element when a floating tensor is not finite: what keeps a diverged result from being
// saved (over a good one).
void require_finite(const NamedTensors& tensors, const std::string& what);

}  // namespace fe
