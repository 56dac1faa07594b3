#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "engine/durable_file.h"
#include "kernels/elementwise.h"

namespace fe {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;  // keeps the header's key order, which is the tensors' order

// Tensor bytes go between memory and file unchanged, and the format is little-endian.
static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

constexpr size_t kHeaderLengthBytes = 8;
constexpr size_t kDataAlignment = 8;
constexpr const char* kMetadataKey = "__metadata__";
constexpr const char* kSingleFileName = "model.safetensors";
constexpr const char* kIndexFileName = "model.safetensors.index.json";

struct DtypeSpelling {
  const char* in_file;
  DType dtype;
};
constexpr std::array<DtypeSpelling, 6> kDtypeSpellings = {{
    {"F32", DType::f32},
    {"F64", DType::f64},
    {"BF16", DType::bf16},
    {"F16", DType::f16},
    {"I32", DType::i32},
    {"I64", DType::i64},
}};

const char* file_dtype_name(DType dtype) {
  for (const auto& spelling : kDtypeSpellings)
    if (spelling.dtype == dtype) return spelling.in_file;
  throw Error("safetensors: no file spelling for dtype " + std::string(dtype_name(dtype)));
}

std::optional<DType> parse_dtype(std::string_view in_file) {
  for (const auto& spelling : kDtypeSpellings)
    if (spelling.in_file == in_file) return spelling.dtype;
  return std::nullopt;
}

std::string supported_dtypes() {
  std::string list;
  for (const auto& spelling : kDtypeSpellings) list += (list.empty() ? "" : ", ") + std::string(spelling.in_file);
  return list;
}

std::string errno_text() { return std::strerror(errno); }

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw Error("safetensors " + file + ": " + what);
}

[[noreturn]] void fail_tensor(const std::string& file, const std::string& name, const std::string& what) {
  fail(file, "tensor '" + name + "': " + what);
}

// ---- reading ----------------------------------------------------------------------------------

uint64_t read_le_u64(const std::byte* bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < 8; ++i) value |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  return value;
}

// dtype size × numel, or nullopt when that overflows 64 bits (a hostile or corrupt shape).
std::optional<uint64_t> byte_size(const Shape& shape, DType dtype) {
  uint64_t bytes = dtype_size(dtype);
  for (int64_t dim : shape) {
    const auto d = static_cast<uint64_t>(dim);
    if (d != 0 && bytes > std::numeric_limits<uint64_t>::max() / d) return std::nullopt;
    bytes *= d;
  }
  return bytes;
}

const Json& required_field(const std::string& file, const std::string& name, const Json& entry,
                           const char* field) {
  const auto it = entry.find(field);
  if (it == entry.end()) fail_tensor(file, name, std::string("missing field \"") + field + "\"");
  return *it;
}

DType parse_dtype_field(const std::string& file, const std::string& name, const Json& entry) {
  const Json& field = required_field(file, name, entry, "dtype");
  if (!field.is_string()) fail_tensor(file, name, "\"dtype\" is not a string");
  const auto& spelling = field.get_ref<const std::string&>();
  const std::optional<DType> dtype = parse_dtype(spelling);
  if (!dtype) fail_tensor(file, name, "unknown dtype \"" + spelling + "\" (supported: " + supported_dtypes() + ")");
  return *dtype;
}

Shape parse_shape_field(const std::string& file, const std::string& name, const Json& entry) {
  const Json& field = required_field(file, name, entry, "shape");
  if (!field.is_array()) fail_tensor(file, name, "\"shape\" is not an array");
  if (field.size() > static_cast<size_t>(Shape::kMaxRank))
    fail_tensor(file, name, "rank " + std::to_string(field.size()) + " exceeds the supported maximum of " +
                                std::to_string(Shape::kMaxRank) + " (shape " + field.dump() + ")");
  Shape shape;
  for (const Json& dim : field) {
    if (!dim.is_number_unsigned() || dim.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail_tensor(file, name, "shape " + field.dump() + " holds something other than a non-negative integer");
    shape.push_back(dim.get<int64_t>());
  }
  return shape;
}

std::pair<uint64_t, uint64_t> parse_offsets_field(const std::string& file, const std::string& name, const Json& entry) {
  const Json& field = required_field(file, name, entry, "data_offsets");
  if (!field.is_array() || field.size() != 2 || !field[0].is_number_unsigned() || !field[1].is_number_unsigned())
    fail_tensor(file, name, "\"data_offsets\" " + field.dump() + " is not a pair of non-negative integers");
  return {field[0].get<uint64_t>(), field[1].get<uint64_t>()};
}

TensorInfo parse_tensor_entry(const std::string& file, const std::string& name, const Json& entry,
                              const std::byte* data_start, uint64_t data_size) {
  if (!entry.is_object()) fail_tensor(file, name, "header entry is not a JSON object");
  const DType dtype = parse_dtype_field(file, name, entry);
  const Shape shape = parse_shape_field(file, name, entry);
  const auto [begin, end] = parse_offsets_field(file, name, entry);
  const std::string offsets = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
  if (begin > end || end > data_size)
    fail_tensor(file, name, offsets + " lie outside the " + std::to_string(data_size) + "-byte data section");
  const std::optional<uint64_t> expected_bytes = byte_size(shape, dtype);
  if (!expected_bytes) fail_tensor(file, name, "shape " + shape.str() + " is too large");
  if (end - begin != *expected_bytes)
    fail_tensor(file, name, offsets + " span " + std::to_string(end - begin) + " bytes but " + file_dtype_name(dtype) +
                                shape.str() + " needs " + std::to_string(*expected_bytes));
  return TensorInfo{name, dtype, shape, data_start + begin, static_cast<size_t>(end - begin), file};
}

std::map<std::string, std::string> parse_metadata(const std::string& file, const Json& entry) {
  if (!entry.is_object()) fail(file, std::string("\"") + kMetadataKey + "\" is not a JSON object");
  std::map<std::string, std::string> metadata;
  for (const auto& [key, value] : entry.items()) {
    if (!value.is_string()) fail(file, std::string(kMetadataKey) + " value of \"" + key + "\" is not a string");
    metadata[key] = value.get<std::string>();
  }
  return metadata;
}

Json parse_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, "cannot open: " + errno_text());
  try {
    return Json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("not valid JSON: ") + e.what());
  }
}

// Levenshtein distance, for suggesting the names closest to a missing one.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(previous, current);
  }
  return previous[b.size()];
}

std::vector<std::string> closest_names(std::string_view target, std::vector<std::string> candidates, size_t count) {
  count = std::min(count, candidates.size());
  std::vector<std::pair<size_t, std::string>> ranked;
  for (auto& name : candidates) ranked.emplace_back(edit_distance(target, name), std::move(name));
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(count), ranked.end());
  std::vector<std::string> closest;
  for (size_t i = 0; i < count; ++i) closest.push_back(std::move(ranked[i].second));
  return closest;
}

// convert() reads elements through typed pointers, which must be aligned for their type. Files from
// other writers need not align tensors, so an unaligned one is first copied bytewise into aligned
// memory.
View readable_view(const TensorInfo& info, Tensor& aligned_copy) {
  // convert() only reads its source, so dropping const for the View is safe on the read-only mapping.
  const View view{const_cast<void*>(info.data), info.dtype, info.shape, Device::cpu};
  if (reinterpret_cast<uintptr_t>(info.data) % dtype_size(info.dtype) == 0) return view;
  aligned_copy = Tensor::empty(info.shape, info.dtype);
  std::memcpy(aligned_copy.data(), info.data, info.nbytes);
  return aligned_copy.view();
}

// ---- writing ----------------------------------------------------------------------------------

void check_writable(const std::string& path, const std::string& name, const View& view, const Json& header) {
  if (name == kMetadataKey) fail_tensor(path, name, "the name is reserved for metadata");
  if (header.contains(name)) fail_tensor(path, name, "the name appears twice");
  if (view.device != Device::cpu) fail_tensor(path, name, "is on " + std::string(device_name(view.device)) + "; only CPU views can be written");
  if (view.data == nullptr && view.nbytes() > 0) fail_tensor(path, name, "has no data");
}

// The JSON header, padded with spaces so the data start (8 + header length) is 8-byte aligned.
std::string build_header(const std::string& path, const std::vector<std::pair<std::string, View>>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, view] : tensors) {
    check_writable(path, name, view, header);
    const uint64_t end = offset + view.nbytes();
    header[name] = {{"dtype", file_dtype_name(view.dtype)},
                    {"shape", std::vector<int64_t>(view.shape.begin(), view.shape.end())},
                    {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text = header.dump();
  text.append((kDataAlignment - (kHeaderLengthBytes + text.size()) % kDataAlignment) % kDataAlignment, ' ');
  return text;
}

}  // namespace

// ---- SafetensorsFile --------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  map_file();
  parse_header();
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_by_name_.find(name);
  return it == index_by_name_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::map_file() {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path_, "cannot open: " + errno_text());
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};  // the mapping stays valid after the descriptor is closed

  struct stat status {};
  if (::fstat(fd, &status) != 0) fail(path_, "cannot stat: " + errno_text());
  if (!S_ISREG(status.st_mode)) fail(path_, "not a regular file");
  mapping_size_ = static_cast<size_t>(status.st_size);
  if (mapping_size_ < kHeaderLengthBytes)
    fail(path_, "file is " + std::to_string(mapping_size_) + " bytes, too short for the 8-byte header length");

  void* address = ::mmap(nullptr, mapping_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (address == MAP_FAILED) fail(path_, "cannot mmap: " + errno_text());
  const size_t size = mapping_size_;
  mapping_ = std::shared_ptr<const std::byte>(static_cast<const std::byte*>(address),
                                              [size](const std::byte* p) { ::munmap(const_cast<std::byte*>(p), size); });
}

void SafetensorsFile::parse_header() {
  const uint64_t header_length = read_le_u64(mapping_.get());
  const uint64_t bytes_after_length = mapping_size_ - kHeaderLengthBytes;
  if (header_length > bytes_after_length)
    fail(path_, "header length " + std::to_string(header_length) + " exceeds the " +
                    std::to_string(bytes_after_length) + " bytes that follow it");

  const char* header_text = reinterpret_cast<const char*>(mapping_.get() + kHeaderLengthBytes);
  Json header;
  try {
    header = Json::parse(header_text, header_text + header_length);
  } catch (const nlohmann::json::exception& e) {
    fail(path_, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path_, "header is not a JSON object");

  const std::byte* data_start = mapping_.get() + kHeaderLengthBytes + header_length;
  const uint64_t data_size = bytes_after_length - header_length;
  for (const auto& [key, entry] : header.items()) {
    if (key == kMetadataKey) {
      metadata_ = parse_metadata(path_, entry);
      continue;
    }
    tensors_.push_back(parse_tensor_entry(path_, key, entry, data_start, data_size));
    index_by_name_.emplace(key, tensors_.size() - 1);
  }
}

// ---- SafetensorsCheckpoint --------------------------------------------------------------------

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& dir_or_file) : path_(dir_or_file) {
  std::error_code ignored;  // a path that cannot be inspected is reported by the open that follows
  if (!fs::is_directory(dir_or_file, ignored)) {
    files_.push_back(std::make_unique<SafetensorsFile>(dir_or_file));
    add_every_tensor_of(*files_.back());
    return;
  }
  const fs::path dir(dir_or_file);
  if (fs::exists(dir / kSingleFileName, ignored)) {
    files_.push_back(std::make_unique<SafetensorsFile>((dir / kSingleFileName).string()));
    add_every_tensor_of(*files_.back());
  } else if (fs::exists(dir / kIndexFileName, ignored)) {
    open_sharded((dir / kIndexFileName).string());
  } else {
    throw Error("safetensors checkpoint " + path_ + ": the directory holds neither " + kSingleFileName +
                " nor " + kIndexFileName);
  }
}

void SafetensorsCheckpoint::add_every_tensor_of(const SafetensorsFile& file) {
  for (const TensorInfo& info : file.tensors()) tensors_by_name_.emplace(info.name, &info);
}

void SafetensorsCheckpoint::open_sharded(const std::string& index_path) {
  const Json index = parse_json_file(index_path);
  const auto weight_map = index.find("weight_map");  // end() when the index is not an object
  if (weight_map == index.end() || !weight_map->is_object())
    fail(index_path, "no \"weight_map\" object mapping tensor names to shard files");

  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, const SafetensorsFile*> shards_by_file_name;
  for (const auto& [name, shard] : weight_map->items()) {
    if (!shard.is_string()) fail(index_path, "the weight_map entry of '" + name + "' is not a file name");
    const std::string shard_path = (dir / shard.get<std::string>()).string();
    auto it = shards_by_file_name.find(shard_path);
    if (it == shards_by_file_name.end()) {
      if (!fs::exists(shard_path)) fail(index_path, "shard " + shard_path + " (holding '" + name + "') is missing");
      files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
      it = shards_by_file_name.emplace(shard_path, files_.back().get()).first;
    }
    const TensorInfo* info = it->second->find(name);
    if (info == nullptr) fail(index_path, "weight_map places '" + name + "' in " + shard_path + ", which lacks it");
    tensors_by_name_.emplace(name, info);
  }
}

const TensorInfo* SafetensorsCheckpoint::find(std::string_view name) const {
  const auto it = tensors_by_name_.find(name);
  return it == tensors_by_name_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> sorted;
  for (const auto& entry : tensors_by_name_) sorted.push_back(entry.first);
  return sorted;
}

void SafetensorsCheckpoint::throw_missing(std::string_view name) const {
  std::string message = "safetensors checkpoint " + path_ + ": no tensor '" + std::string(name) + "'";
  const std::vector<std::string> closest = closest_names(name, names(), 3);
  for (size_t i = 0; i < closest.size(); ++i) message += (i == 0 ? " (closest: '" : ", '") + closest[i] + "'";
  if (!closest.empty()) message += ")";
  throw Error(message);
}

Tensor SafetensorsCheckpoint::load(std::string_view name, const Shape& expected, DType dtype) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) throw_missing(name);
  const std::string where = "safetensors checkpoint " + path_ + ": tensor '" + info->name + "'" +
                            (info->file == path_ ? "" : " in " + info->file);
  if (!(info->shape == expected))
    throw Error(where + " has shape " + info->shape.str() + " but " + expected.str() + " was expected");
  if (is_floating(info->dtype) != is_floating(dtype))
    throw Error(where + " is " + dtype_name(info->dtype) + ", which cannot be converted to " + dtype_name(dtype));
  Tensor aligned_copy;
  Tensor result = Tensor::empty(expected, dtype);
  kernels::convert(result, readable_view(*info, aligned_copy));
  if (const auto bad = find_non_finite(result))
    throw Error(where + ": element " + std::to_string(bad->index) + " is " + value_text(bad->value) +
                "; the file holds non-finite values (saved from a diverged run?). Use another checkpoint");
  return result;
}

// ---- writing ----------------------------------------------------------------------------------

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, View>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string header = build_header(path, tensors, metadata);
  std::array<unsigned char, kHeaderLengthBytes> length_bytes{};
  for (size_t i = 0; i < length_bytes.size(); ++i) length_bytes[i] = static_cast<unsigned char>(header.size() >> (8 * i));

  DurableFileWriter out(path);
  out.append(length_bytes.data(), length_bytes.size());
  out.append(header.data(), header.size());
  for (const auto& [name, view] : tensors) out.append(view.data, view.nbytes());
  out.commit();
}

void write_named_tensors(const std::string& path, const NamedTensors& tensors) {
  NamedTensors host;
  for (const auto& [name, t] : tensors) host.emplace_back(name, t.device() == Device::cpu ? t : t.to_device(Device::cpu));
  const std::vector<std::pair<std::string, View>> views(host.begin(), host.end());
  write_safetensors(path, views, {{"format", "pt"}});
}

NamedTensors read_named_tensors(const std::string& path) {
  const SafetensorsCheckpoint file(path);
  NamedTensors tensors;
  for (const std::string& name : file.names()) {
    const TensorInfo* info = file.find(name);
    tensors.emplace_back(name, file.load(name, info->shape, info->dtype));
  }
  return tensors;
}

void copy_named_tensors(const NamedTensors& into, const NamedTensors& from, const std::string& source) {
  const std::map<std::string, Tensor> by_name(from.begin(), from.end());
  for (const auto& [name, tensor] : into) {
    const auto it = by_name.find(name);
    if (it == by_name.end()) throw Error(source + ": has no tensor " + name);
    if (!(it->second.shape() == tensor.shape()))
      throw Error(source + ": " + name + " is " + it->second.view().str() + ", expected the shape " + tensor.shape().str());
    kernels::convert(tensor, it->second.to_device(tensor.device()));
  }
}

void require_finite(const NamedTensors& tensors, const std::string& what) {
  for (const auto& [name, tensor] : tensors)
    if (const auto bad = find_non_finite(tensor))
      throw Error(what + ": tensor '" + name + "' element " + std::to_string(bad->index) + " is " +
                  value_text(bad->value) + "; refusing to write non-finite values");
}

}  // namespace fe
