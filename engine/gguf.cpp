#include "engine/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>

namespace fe {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF data is little-endian");

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 4;
constexpr uint64_t kDefaultAlignment = 32;
constexpr const char* kFix = "the file is truncated or corrupt: download or convert it again";

struct TypeEntry {
  GgmlType type;
  GgmlTypeLayout layout;
};
// Block sizes from ggml's type traits (ggml.c) and gguf-py's GGML_QUANT_SIZES.
constexpr std::array<TypeEntry, 32> kTypes = {{
    {GgmlType::F32, {"F32", 1, 4}},
    {GgmlType::F16, {"F16", 1, 2}},
    {GgmlType::Q4_0, {"Q4_0", 32, 18}},
    {GgmlType::Q4_1, {"Q4_1", 32, 20}},
    {GgmlType::Q5_0, {"Q5_0", 32, 22}},
    {GgmlType::Q5_1, {"Q5_1", 32, 24}},
    {GgmlType::Q8_0, {"Q8_0", 32, 34}},
    {GgmlType::Q8_1, {"Q8_1", 32, 40}},
    {GgmlType::Q2_K, {"Q2_K", 256, 84}},
    {GgmlType::Q3_K, {"Q3_K", 256, 110}},
    {GgmlType::Q4_K, {"Q4_K", 256, 144}},
    {GgmlType::Q5_K, {"Q5_K", 256, 176}},
    {GgmlType::Q6_K, {"Q6_K", 256, 210}},
    {GgmlType::Q8_K, {"Q8_K", 256, 292}},
    {GgmlType::IQ2_XXS, {"IQ2_XXS", 256, 66}},
    {GgmlType::IQ2_XS, {"IQ2_XS", 256, 74}},
    {GgmlType::IQ3_XXS, {"IQ3_XXS", 256, 98}},
    {GgmlType::IQ1_S, {"IQ1_S", 256, 50}},
    {GgmlType::IQ4_NL, {"IQ4_NL", 32, 18}},
    {GgmlType::IQ3_S, {"IQ3_S", 256, 110}},
    {GgmlType::IQ2_S, {"IQ2_S", 256, 82}},
    {GgmlType::IQ4_XS, {"IQ4_XS", 256, 136}},
    {GgmlType::I8, {"I8", 1, 1}},
    {GgmlType::I16, {"I16", 1, 2}},
    {GgmlType::I32, {"I32", 1, 4}},
    {GgmlType::I64, {"I64", 1, 8}},
    {GgmlType::F64, {"F64", 1, 8}},
    {GgmlType::IQ1_M, {"IQ1_M", 256, 56}},
    {GgmlType::BF16, {"BF16", 1, 2}},
    {GgmlType::TQ1_0, {"TQ1_0", 256, 54}},
    {GgmlType::TQ2_0, {"TQ2_0", 256, 66}},
    {GgmlType::MXFP4, {"MXFP4", 32, 17}},
}};

// Bytes of one scalar value, 0 for strings and arrays (variable) and unknown types.
uint64_t scalar_size(GgufValueType type) {
  switch (type) {
    case GgufValueType::u8:
    case GgufValueType::i8:
    case GgufValueType::boolean:
      return 1;
    case GgufValueType::u16:
    case GgufValueType::i16:
      return 2;
    case GgufValueType::u32:
    case GgufValueType::i32:
    case GgufValueType::f32:
      return 4;
    case GgufValueType::u64:
    case GgufValueType::i64:
    case GgufValueType::f64:
      return 8;
    default:
      return 0;
  }
}

bool known_value_type(uint32_t raw) { return raw <= static_cast<uint32_t>(GgufValueType::f64); }

// The fewest bytes an element of `type` takes in the file: bounds array counts before reserving.
uint64_t min_element_size(GgufValueType type) {
  if (type == GgufValueType::string) return 8;  // the length
  if (type == GgufValueType::array) return 12;  // element type + count
  return scalar_size(type);
}

// A read position in the mapping. Every read checks the remaining size first; `context` names
// what is being read ("key 'llama.block_count'") for the error.
class Cursor {
 public:
  Cursor(const GgufFile& file, const std::byte* base, uint64_t size) : file_(file), base_(base), size_(size) {}

  uint64_t pos() const { return pos_; }
  void set_context(std::string context) { context_ = std::move(context); }
  const std::string& context() const { return context_; }

  // The next `bytes` bytes, which the read moves past.
  const std::byte* take(uint64_t bytes, const char* what) {
    if (bytes > size_ - pos_)
      file_.fail(context_ + ": " + what + " needs " + std::to_string(bytes) + " bytes at offset " +
                 std::to_string(pos_) + " but the file ends at byte " + std::to_string(size_) + " (" + kFix + ")");
    const std::byte* at = base_ + pos_;
    pos_ += bytes;
    return at;
  }

  template <class T>
  T read(const char* what) {
    T value;
    std::memcpy(&value, take(sizeof(T), what), sizeof(T));
    return value;
  }

  std::string read_string(const char* what) {
    const uint64_t length = read<uint64_t>(what);
    const std::byte* text = take(length, what);
    return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(length));
  }

  uint64_t remaining() const { return size_ - pos_; }

 private:
  const GgufFile& file_;
  const std::byte* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
  std::string context_;
};

template <class T>
T load(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// The scalar of `type` stored at `p` (scalar_size(type) bytes).
GgufValue decode_scalar(GgufValueType type, const std::byte* p) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufValueType::u8:
      v.value = uint64_t{load<uint8_t>(p)};
      break;
    case GgufValueType::u16:
      v.value = uint64_t{load<uint16_t>(p)};
      break;
    case GgufValueType::u32:
      v.value = uint64_t{load<uint32_t>(p)};
      break;
    case GgufValueType::u64:
      v.value = load<uint64_t>(p);
      break;
    case GgufValueType::i8:
      v.value = int64_t{load<int8_t>(p)};
      break;
    case GgufValueType::i16:
      v.value = int64_t{load<int16_t>(p)};
      break;
    case GgufValueType::i32:
      v.value = int64_t{load<int32_t>(p)};
      break;
    case GgufValueType::i64:
      v.value = load<int64_t>(p);
      break;
    case GgufValueType::f32:
      v.value = double{load<float>(p)};
      break;
    case GgufValueType::f64:
      v.value = load<double>(p);
      break;
    case GgufValueType::boolean:
      v.value = load<uint8_t>(p) != 0;
      break;
    default:
      throw Error(std::string("GGUF: ") + gguf_value_type_name(type) + " is not a scalar type");
  }
  return v;
}

GgufArray read_array(Cursor& in, int depth, const GgufFile& file) {
  if (depth >= kMaxArrayNesting)
    file.fail(in.context() + ": arrays nested deeper than " + std::to_string(kMaxArrayNesting) + " levels (" + kFix +
              ")");
  const auto raw_type = in.read<uint32_t>("the array element type");
  if (!known_value_type(raw_type))
    file.fail(in.context() + ": unknown array element type " + std::to_string(raw_type) + " (" + kFix + ")");
  GgufArray array;
  array.element_type = static_cast<GgufValueType>(raw_type);
  array.count = in.read<uint64_t>("the array length");
  // Each element takes at least min_element_size bytes: a count the rest of the file cannot hold is
  // corrupt, and refusing it here keeps a bad count from becoming a huge allocation.
  if (array.count > in.remaining() / min_element_size(array.element_type))
    file.fail(in.context() + ": array of " + std::to_string(array.count) + " " +
              gguf_value_type_name(array.element_type) + " elements does not fit in the " +
              std::to_string(in.remaining()) + " bytes left in the file (" + kFix + ")");
  const auto count = static_cast<size_t>(array.count);
  if (const uint64_t size = scalar_size(array.element_type)) {
    const std::byte* bytes = in.take(array.count * size, "the array elements");
    array.scalar_bytes.assign(bytes, bytes + array.count * size);
  } else if (array.element_type == GgufValueType::string) {
    array.strings.reserve(count);
    for (size_t i = 0; i < count; ++i) array.strings.push_back(in.read_string("a string element"));
  } else {
    array.arrays.reserve(count);
    for (size_t i = 0; i < count; ++i) array.arrays.push_back(read_array(in, depth + 1, file));
  }
  return array;
}

GgufValue read_value(Cursor& in, GgufValueType type, int depth, const GgufFile& file) {
  if (type == GgufValueType::string) return {type, in.read_string("a string value")};
  if (type == GgufValueType::array) return {type, std::make_shared<const GgufArray>(read_array(in, depth, file))};
  const std::string what = std::string("the ") + gguf_value_type_name(type) + " value";
  return decode_scalar(type, in.take(scalar_size(type), what.c_str()));
}

// The decimal with the fewest digits that reads back as the same float: what a converter that
// stored a config's 1e-05 as f32 started from.
double shortest_decimal(float value) {
  std::array<char, 64> text{};
  const auto [end, error] = std::to_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc()) return value;
  double parsed = value;
  std::from_chars(text.data(), end, parsed);
  return parsed;
}

// Built piecewise: GCC 12 reports a false -Wrestrict on "'" + std::string.
std::string quoted(std::string_view text) {
  std::string out(1, '\'');
  out += text;
  out += '\'';
  return out;
}

}  // namespace

const char* gguf_value_type_name(GgufValueType type) {
  static constexpr const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                          "bool", "string", "array", "u64", "i64", "f64"};
  const auto index = static_cast<uint32_t>(type);
  return index < std::size(names) ? names[index] : "unknown";
}

bool gguf_integer_type(GgufValueType type) {
  return scalar_size(type) != 0 && type != GgufValueType::boolean && type != GgufValueType::f32 &&
         type != GgufValueType::f64;
}

GgufValue GgufArray::at(uint64_t index) const {
  if (index >= count)
    throw Error("GGUF: array element " + std::to_string(index) + " of " + std::to_string(count) + " is out of range");
  if (element_type == GgufValueType::string) return {element_type, strings[index]};
  if (element_type == GgufValueType::array) return {element_type, std::make_shared<const GgufArray>(arrays[index])};
  return decode_scalar(element_type, scalar_bytes.data() + index * scalar_size(element_type));
}

bool GgufValue::is_integer() const {
  return std::holds_alternative<uint64_t>(value) || std::holds_alternative<int64_t>(value);
}

bool GgufValue::is_number() const { return is_integer() || std::holds_alternative<double>(value); }

std::optional<int64_t> GgufValue::as_int() const {
  if (const auto* u = std::get_if<uint64_t>(&value)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  return std::nullopt;
}

std::optional<double> GgufValue::as_double() const {
  if (const auto* d = std::get_if<double>(&value))
    return type == GgufValueType::f32 ? shortest_decimal(static_cast<float>(*d)) : *d;
  if (const auto* u = std::get_if<uint64_t>(&value)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<double>(*i);
  return std::nullopt;
}

const std::string* GgufValue::as_string() const { return std::get_if<std::string>(&value); }

const GgufArray* GgufValue::as_array() const {
  const auto* array = std::get_if<std::shared_ptr<const GgufArray>>(&value);
  return array ? array->get() : nullptr;
}

std::string GgufValue::type_str() const {
  if (const GgufArray* array = as_array()) return std::string("array of ") + gguf_value_type_name(array->element_type);
  return gguf_value_type_name(type);
}

const GgmlTypeLayout* ggml_type_layout(GgmlType type) {
  for (const TypeEntry& entry : kTypes)
    if (entry.type == type) return &entry.layout;
  return nullptr;
}

std::string ggml_type_name(GgmlType type) {
  if (const GgmlTypeLayout* layout = ggml_type_layout(type)) return layout->name;
  return "type " + std::to_string(static_cast<uint32_t>(type));
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

Shape GgufTensorInfo::shape() const { return Shape(ne.rbegin(), ne.rend()); }

GgufFile::GgufFile(const std::string& path) : path_(path) {
  map_file();
  parse();
}

void GgufFile::fail(const std::string& what) const { throw Error("GGUF " + path_ + ": " + what); }

void GgufFile::fail_key(std::string_view key, const std::string& what) const {
  fail("key " + quoted(key) + ": " + what);
}

void GgufFile::fail_tensor(std::string_view name, const std::string& what) const {
  fail("tensor " + quoted(name) + ": " + what);
}

void GgufFile::map_file() {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(std::string("cannot open: ") + std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};  // the mapping stays valid after the descriptor is closed
  struct stat status {};
  if (::fstat(fd, &status) != 0) fail(std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(status.st_mode)) fail("not a regular file");
  file_size_ = static_cast<uint64_t>(status.st_size);
  if (file_size_ < 4)
    fail("the file is " + std::to_string(file_size_) + " bytes, too short for a GGUF header (" + kFix + ")");
  void* address = ::mmap(nullptr, file_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (address == MAP_FAILED) fail(std::string("cannot mmap: ") + std::strerror(errno));
  const uint64_t size = file_size_;
  mapping_ = std::shared_ptr<const std::byte>(static_cast<const std::byte*>(address), [size](const std::byte* p) {
    ::munmap(const_cast<std::byte*>(p), size);
  });
}

void GgufFile::parse() {
  Cursor in(*this, mapping_.get(), file_size_);
  in.set_context("header");
  const auto magic = in.read<uint32_t>("the magic");
  if (magic != kMagic) {
    std::string got;
    for (int i = 0; i < 4; ++i) {
      const char c = static_cast<char>((magic >> (8 * i)) & 0xff);
      if (c >= 32 && c < 127) {
        got += c;
      } else {
        constexpr const char* kHex = "0123456789abcdef";
        got += {'\\', 'x', kHex[(c >> 4) & 0xf], kHex[c & 0xf]};
      }
    }
    fail("not a GGUF file: it starts with \"" + got + "\" instead of \"GGUF\" (is it a safetensors or PyTorch file?)");
  }
  version_ = in.read<uint32_t>("the version");
  if (version_ != 2 && version_ != 3) {
    // A big-endian writer (gguf-py's --bigendian) stores the version byte-swapped: 3 reads as 0x03000000.
    const uint32_t swapped = __builtin_bswap32(version_);
    if (swapped == 2 || swapped == 3)
      fail("big-endian GGUF (version " + std::to_string(swapped) +
           " stored byte-swapped) is not supported: convert the model again without --bigendian");
    if (version_ == 1)
      fail(
          "GGUF version 1 (32-bit counts, 2023) is not supported (supported: 2, 3): convert the model again "
          "with a current llama.cpp");
    if (version_ == 0) fail("GGUF version 0 does not exist (supported: 2, 3): " + std::string(kFix));
    fail("GGUF version " + std::to_string(version_) +
         " is not supported (supported: 2, 3): a newer llama.cpp wrote it, or the file is corrupt");
  }
  const auto tensor_count = in.read<uint64_t>("the tensor count");
  const auto kv_count = in.read<uint64_t>("the key/value count");
  // Reservations are capped by what the rest of the file can hold (a key/value takes at least
  // 8 + 4 + 1 bytes, a tensor info 8 + 4 + 4 + 8), so a corrupt count cannot allocate much; reading
  // then stops at the first entry that does not fit, and the error names it.
  metadata_.reserve(static_cast<size_t>(std::min<uint64_t>(kv_count, in.remaining() / 13)));
  for (uint64_t i = 0; i < kv_count; ++i) {
    in.set_context("key/value " + std::to_string(i) + " of " + std::to_string(kv_count));
    std::string key = in.read_string("the key");
    in.set_context("key " + quoted(key));
    const auto raw_type = in.read<uint32_t>("the value type");
    if (!known_value_type(raw_type))
      fail_key(key, "unknown value type " + std::to_string(raw_type) + " (" + kFix + ")");
    GgufValue value = read_value(in, static_cast<GgufValueType>(raw_type), 0, *this);
    if (metadata_index_.count(key)) fail_key(key, "appears twice in the metadata (" + std::string(kFix) + ")");
    metadata_index_.emplace(key, metadata_.size());
    metadata_.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* alignment = find("general.alignment")) {
    if (alignment->type != GgufValueType::u32)
      fail_key("general.alignment", "is a " + alignment->type_str() + ", expected a u32");
    alignment_ = *alignment->as_int();
    if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0)
      fail_key("general.alignment", "is " + std::to_string(alignment_) + ", expected a power of two");
  } else {
    alignment_ = kDefaultAlignment;
  }

  tensors_.reserve(static_cast<size_t>(std::min<uint64_t>(tensor_count, in.remaining() / 24)));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    in.set_context("tensor info " + std::to_string(i) + " of " + std::to_string(tensor_count));
    GgufTensorInfo t;
    t.name = in.read_string("the tensor name");
    in.set_context("tensor " + quoted(t.name));
    const auto rank = in.read<uint32_t>("the rank");
    if (rank > kMaxDims)
      fail_tensor(t.name, "rank " + std::to_string(rank) + " exceeds ggml's maximum of " + std::to_string(kMaxDims) +
                              " (" + kFix + ")");
    uint64_t numel = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < rank; ++d) {
      const auto dim = in.read<uint64_t>("a dimension");
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (dim != 0 && numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim))
        overflow = true;
      else
        numel *= dim;
      t.ne.push_back(static_cast<int64_t>(std::min<uint64_t>(dim, std::numeric_limits<int64_t>::max())));
    }
    const auto raw_type = in.read<uint32_t>("the tensor type");
    t.type = static_cast<GgmlType>(raw_type);
    t.offset = in.read<uint64_t>("the data offset");
    if (overflow) fail_tensor(t.name, "its dimensions overflow a 64-bit element count (" + std::string(kFix) + ")");
    const GgmlTypeLayout* layout = ggml_type_layout(t.type);
    if (!layout)
      fail_tensor(t.name, "unknown ggml type " + std::to_string(raw_type) +
                              " (a newer llama.cpp quantization, or a corrupt file): requantize it to a known type "
                              "such as Q8_0 or F16");
    const int64_t row = t.ne.empty() ? 1 : t.ne[0];
    if (row % layout->block_elements != 0)
      fail_tensor(t.name, "its rows of " + std::to_string(row) + " elements are not a whole number of " + layout->name +
                              " blocks of " + std::to_string(layout->block_elements) + " (" + kFix + ")");
    const uint64_t blocks = numel / static_cast<uint64_t>(layout->block_elements);
    if (blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(layout->block_bytes))
      fail_tensor(t.name, "its byte size overflows 64 bits (" + std::string(kFix) + ")");
    t.nbytes = blocks * static_cast<uint64_t>(layout->block_bytes);
    if (tensor_index_.count(t.name))
      fail_tensor(t.name, "appears twice in the tensor list (" + std::string(kFix) + ")");
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  const uint64_t header_end = in.pos();
  data_offset_ = header_end + (alignment_ - header_end % alignment_) % alignment_;
  for (GgufTensorInfo& t : tensors_) {
    const std::string range = "data [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) + ")";
    if (t.offset % alignment_ != 0)
      fail_tensor(t.name, range + " starts off the " + std::to_string(alignment_) + "-byte alignment (" + kFix + ")");
    if (data_offset_ > file_size_ || t.offset > file_size_ - data_offset_ ||
        t.nbytes > file_size_ - data_offset_ - t.offset)
      fail_tensor(t.name, range + " of the data section (which starts at byte " + std::to_string(data_offset_) +
                              ") lies outside the " + std::to_string(file_size_) + "-byte file (" + kFix + ")");
    t.data = mapping_.get() + data_offset_ + t.offset;
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const std::string* s = v->as_string()) return *s;
  fail_key(key, "is a " + v->type_str() + ", expected a string");
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const auto i = v->as_int()) return i;
  fail_key(key, "is a " + v->type_str() + (v->is_integer() ? " beyond the int64 range" : "") + ", expected an integer");
}

std::optional<double> GgufFile::get_double(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const auto d = v->as_double()) return d;
  fail_key(key, "is a " + v->type_str() + ", expected a number");
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const bool* b = std::get_if<bool>(&v->value)) return *b;
  fail_key(key, "is a " + v->type_str() + ", expected a bool");
}

std::optional<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  const GgufArray* array = v->as_array();
  if (!array || array->element_type != GgufValueType::string)
    fail_key(key, "is a " + v->type_str() + ", expected an array of string");
  return array->strings;
}

std::optional<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  const GgufArray* array = v->as_array();
  if (!array || !gguf_integer_type(array->element_type))
    fail_key(key, "is a " + v->type_str() + ", expected an array of integers");
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(array->size()));
  for (uint64_t i = 0; i < array->size(); ++i) {
    const auto value = array->at(i).as_int();
    if (!value) fail_key(key, "element " + std::to_string(i) + " is beyond the int64 range");
    out.push_back(*value);
  }
  return out;
}

std::optional<std::vector<double>> GgufFile::get_double_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  const GgufArray* array = v->as_array();
  if (!array || !(gguf_integer_type(array->element_type) || array->element_type == GgufValueType::f32 ||
                  array->element_type == GgufValueType::f64))
    fail_key(key, "is a " + v->type_str() + ", expected an array of numbers");
  std::vector<double> out;
  out.reserve(static_cast<size_t>(array->size()));
  for (uint64_t i = 0; i < array->size(); ++i) out.push_back(*array->at(i).as_double());
  return out;
}

}  // namespace fe
