// GGUF reading, dequantization and import-gguf, against llama.cpp's own `gguf` Python package
// (tests/reference/gguf_reference.py): its quantizer and dequantizer, its writer, and HF
// `tokenizers` on the original and the rebuilt tokenizer.json. Hand-made files (GgufBuilder) cover
// the corrupt and unsupported cases, which need no Python.
#include "engine/gguf.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/gguf_dequantize.h"
#include "engine/gguf_import.h"
#include "engine/llama_config.h"
#include "engine/llama_weights.h"
#include "engine/safetensors.h"
#include "kernels/half.h"
#include "tests/reference_env.h"
#include "tests/test_files.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using nlohmann::json;
using testing::HasSubstr;
using testing::Not;

const std::string kScript = FE_SOURCE_DIR "/tests/reference/gguf_reference.py";

json read_json(const std::string& path) { return json::parse(test::read_file(path)); }

// Runs a command with one thread per helper (the tests share two cores); "" on success, else its
// output for the failure message.
std::string run(const std::string& command) {
  const std::string log = std::filesystem::temp_directory_path() / ("gguf_test_" + std::to_string(::getpid()) + ".log");
  const int status = std::system(("OMP_NUM_THREADS=1 " + command + " > " + log + " 2>&1").c_str());
  const std::string output = test::read_file(log);
  std::filesystem::remove(log);
  return status == 0 ? "" : "`" + command + "` failed:\n" + output;
}

// ---- hand-made GGUF files -----------------------------------------------------------------------

template <class T>
std::string le(T value) {
  std::string bytes(sizeof(T), '\0');
  std::memcpy(bytes.data(), &value, sizeof(T));
  return bytes;
}

std::string gguf_string(const std::string& s) { return le<uint64_t>(s.size()) + s; }

// Assembles GGUF files byte by byte, following the format description (docs/gguf.md), so a test can
// also write what no correct writer would.
class GgufBuilder {
 public:
  // A key already added takes the new value in its place.
  void raw_kv(const std::string& key, uint32_t type, const std::string& payload) {
    std::string entry = gguf_string(key) + le(type) + payload;
    for (auto& [existing, bytes] : kvs_)
      if (existing == key) {
        bytes = std::move(entry);
        return;
      }
    kvs_.emplace_back(key, std::move(entry));
  }
  void u32(const std::string& key, uint32_t v) { raw_kv(key, 4, le(v)); }
  void u64(const std::string& key, uint64_t v) { raw_kv(key, 10, le(v)); }
  void f32(const std::string& key, float v) { raw_kv(key, 6, le(v)); }
  void boolean(const std::string& key, bool v) { raw_kv(key, 7, le<uint8_t>(v)); }
  void string(const std::string& key, const std::string& v) { raw_kv(key, 8, gguf_string(v)); }
  void strings(const std::string& key, const std::vector<std::string>& values) {
    std::string payload = le<uint32_t>(8) + le<uint64_t>(values.size());
    for (const std::string& v : values) payload += gguf_string(v);
    raw_kv(key, 9, payload);
  }
  void i32s(const std::string& key, const std::vector<int32_t>& values) {
    std::string payload = le<uint32_t>(5) + le<uint64_t>(values.size());
    for (int32_t v : values) payload += le(v);
    raw_kv(key, 9, payload);
  }
  // ne in GGUF order (innermost first); data as stored. The offset is the next aligned one unless
  // given. A tensor of a name already added takes its place.
  void tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, std::string data,
              std::optional<uint64_t> offset = std::nullopt) {
    Tensor t{name, std::move(ne), type, std::move(data), offset};
    for (Tensor& existing : tensors_)
      if (existing.name == name) {
        existing = std::move(t);
        return;
      }
    tensors_.push_back(std::move(t));
  }
  void f32_tensor(const std::string& name, std::vector<uint64_t> ne, const std::vector<float>& values) {
    std::string data(values.size() * 4, '\0');
    std::memcpy(data.data(), values.data(), data.size());
    tensor(name, std::move(ne), 0, std::move(data));
  }

  std::string bytes(uint32_t version = 3) const {
    std::string out = "GGUF" + le(version) + le<uint64_t>(tensors_.size()) + le<uint64_t>(kvs_.size());
    for (const auto& [key, kv] : kvs_) out += kv;
    std::string data;
    for (const Tensor& t : tensors_) {
      data.append((kAlignment - data.size() % kAlignment) % kAlignment, '\0');
      out += gguf_string(t.name) + le<uint32_t>(t.ne.size());
      for (uint64_t d : t.ne) out += le(d);
      out += le(t.type) + le<uint64_t>(t.offset.value_or(data.size()));
      data += t.data;  // no padding after the last tensor: the file ends with its data
    }
    out.append((kAlignment - out.size() % kAlignment) % kAlignment, '\0');
    return out + data;
  }

 private:
  static constexpr size_t kAlignment = 32;
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::string data;
    std::optional<uint64_t> offset;
  };
  std::vector<std::pair<std::string, std::string>> kvs_;  // key, encoded key/value
  std::vector<Tensor> tensors_;
};

// A complete llama GGUF small enough to build by hand: hidden 8, 2 heads of 4 dims (1 KV head),
// FFN 4, vocabulary 5, tied embeddings. Element (r, c) of every HF matrix (row-major) holds
// 100·r + c, so a permutation shows in the values.
constexpr int64_t kTinyHidden = 8, kTinyHeads = 2, kTinyKvHeads = 1, kTinyHeadDim = 4, kTinyFfn = 4, kTinyVocab = 5;

std::vector<float> coded(int64_t rows, int64_t cols) {
  std::vector<float> v;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) v.push_back(static_cast<float>(100 * r + c));
  return v;
}

// `architecture` and `pre` let a test make the file unsupported.
GgufBuilder tiny_llama(const std::string& architecture = "llama", const std::string& pre = "gpt2") {
  GgufBuilder b;
  const std::string a = architecture + ".";
  b.string("general.architecture", architecture);
  b.u32(a + "block_count", 1);
  b.u32(a + "context_length", 64);
  b.u32(a + "embedding_length", kTinyHidden);
  b.u32(a + "feed_forward_length", kTinyFfn);
  b.u32(a + "attention.head_count", kTinyHeads);
  b.u32(a + "attention.head_count_kv", kTinyKvHeads);
  b.f32(a + "rope.freq_base", 10000.0f);
  b.f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  b.string("tokenizer.ggml.model", "gpt2");
  b.string("tokenizer.ggml.pre", pre);
  b.strings("tokenizer.ggml.tokens", {"<s>", "</s>", "a", "b", "ab"});
  b.i32s("tokenizer.ggml.token_type", {3, 3, 1, 1, 1});
  b.strings("tokenizer.ggml.merges", {"a b"});
  b.u32("tokenizer.ggml.bos_token_id", 0);
  b.u32("tokenizer.ggml.eos_token_id", 1);
  const uint64_t d = kTinyHidden, q = kTinyHeads * kTinyHeadDim, kv = kTinyKvHeads * kTinyHeadDim, ff = kTinyFfn;
  b.f32_tensor("token_embd.weight", {d, kTinyVocab}, coded(kTinyVocab, d));
  b.f32_tensor("blk.0.attn_norm.weight", {d}, coded(1, d));
  b.f32_tensor("blk.0.attn_q.weight", {d, q}, coded(q, d));
  b.f32_tensor("blk.0.attn_k.weight", {d, kv}, coded(kv, d));
  b.f32_tensor("blk.0.attn_v.weight", {d, kv}, coded(kv, d));
  b.f32_tensor("blk.0.attn_output.weight", {q, d}, coded(d, q));
  b.f32_tensor("blk.0.ffn_gate.weight", {d, ff}, coded(ff, d));
  b.f32_tensor("blk.0.ffn_up.weight", {d, ff}, coded(ff, d));
  b.f32_tensor("blk.0.ffn_down.weight", {ff, d}, coded(d, ff));
  b.f32_tensor("blk.0.ffn_norm.weight", {d}, coded(1, d));
  b.f32_tensor("output_norm.weight", {d}, coded(1, d));
  return b;
}

// ---- reader ------------------------------------------------------------------------------------

TEST(GgufReader, ReadsHandMadeFile) {
  test::TempDir dir;
  test::write_file(dir.path("tiny.gguf"), tiny_llama().bytes());
  const GgufFile f(dir.path("tiny.gguf"));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 1);
  EXPECT_EQ(f.get_double("llama.attention.layer_norm_rms_epsilon"), 1e-5);  // f32 as its shortest decimal
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens")->at(4), "ab");
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type")->at(0), 3);
  EXPECT_FALSE(f.get_string("no.such.key"));
  EXPECT_THAT(test::error_of<Error>([&] { f.get_string("llama.block_count"); }),
              AllOf(HasSubstr(dir.path("tiny.gguf")), HasSubstr("'llama.block_count'"), HasSubstr("u32"),
                    HasSubstr("expected a string")));
  ASSERT_EQ(f.tensors().size(), 11u);
  const GgufTensorInfo* q = f.find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape(), (Shape{kTinyHeads * kTinyHeadDim, kTinyHidden}));  // GGUF ne reversed
  EXPECT_EQ(q->data, f.tensors().front().data + q->offset);
  const Tensor values = dequantize(f, *q);
  EXPECT_EQ(values.as<float>()[1 * kTinyHidden + 2], 102.0f);  // row 1, column 2
}

TEST(GgufReader, EveryTruncationIsAnErrorNamingTheFile) {
  test::TempDir dir;
  const std::string whole = tiny_llama().bytes();
  const std::string path = dir.path("cut.gguf");
  test::write_file(path, whole);
  for (size_t length = whole.size(); length-- > 0;) {
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(length)), 0);
    const std::string message = test::error_of<Error>([&] { GgufFile{path}; });
    ASSERT_THAT(message, HasSubstr(path)) << "cut at " << length;
    ASSERT_THAT(message, HasSubstr("download or convert it again")) << "cut at " << length << ": " << message;
  }
  // A cut inside the metadata names the key being read.
  test::write_file(path, whole.substr(0, 100));  // inside the value of llama.block_count
  EXPECT_THAT(test::error_of<Error>([&] { GgufFile{path}; }), AllOf(HasSubstr("key 'llama."), HasSubstr("truncated")));
}

TEST(GgufReader, BadMagicSaysWhatTheFileIs) {
  test::TempDir dir;
  std::string bytes = tiny_llama().bytes();
  bytes.replace(0, 4, "\x10\x00\x00\x00", 4);  // how a safetensors file starts
  test::write_file(dir.path("model.safetensors"), bytes);
  EXPECT_THAT(test::error_of<Error>([&] { GgufFile{dir.path("model.safetensors")}; }),
              AllOf(HasSubstr(dir.path("model.safetensors")), HasSubstr("not a GGUF file"), HasSubstr("\\x10")));
}

TEST(GgufReader, UnsupportedVersionsAreRefused) {
  test::TempDir dir;
  const std::string path = dir.path("version.gguf");
  const auto error_for = [&](uint32_t version) {
    test::write_file(path, tiny_llama().bytes(version));
    return test::error_of<Error>([&] { GgufFile{path}; });
  };
  EXPECT_THAT(error_for(1), AllOf(HasSubstr("version 1"), HasSubstr("supported: 2, 3"),
                                  HasSubstr("convert the model again"), Not(HasSubstr("big-endian"))));
  // A big-endian writer stores version 2 or 3 byte-swapped.
  for (uint32_t swapped : {0x02000000u, 0x03000000u})
    EXPECT_THAT(error_for(swapped), AllOf(HasSubstr("big-endian"), HasSubstr("without --bigendian"))) << swapped;
  EXPECT_THAT(error_for(0),
              AllOf(HasSubstr("version 0"), HasSubstr("download or convert it again"), Not(HasSubstr("big-endian"))));
  EXPECT_THAT(error_for(4), AllOf(HasSubstr("version 4"), HasSubstr("newer llama.cpp"), Not(HasSubstr("big-endian"))));
  EXPECT_THAT(error_for(0x00020000u), AllOf(HasSubstr("version 131072"), Not(HasSubstr("big-endian"))));
}

TEST(GgufReader, TensorDataOutsideTheFileNamesTheTensor) {
  test::TempDir dir;
  GgufBuilder b = tiny_llama();
  b.tensor("blk.9.attn_q.weight", {8, 8}, 0, std::string(256, '\0'), uint64_t{1} << 20);
  test::write_file(dir.path("bad.gguf"), b.bytes());
  EXPECT_THAT(test::error_of<Error>([&] { GgufFile{dir.path("bad.gguf")}; }),
              AllOf(HasSubstr(dir.path("bad.gguf")), HasSubstr("'blk.9.attn_q.weight'"), HasSubstr("outside"),
                    HasSubstr("download or convert it again")));
}

TEST(GgufReader, ImpossibleCountsAreRefusedWithoutAllocating) {
  test::TempDir dir;
  GgufBuilder b = tiny_llama();
  b.raw_kv("huge.array", 9, le<uint32_t>(8) + le<uint64_t>(uint64_t{1} << 60));  // 2^60 strings
  test::write_file(dir.path("huge.gguf"), b.bytes());
  EXPECT_THAT(test::error_of<Error>([&] { GgufFile{dir.path("huge.gguf")}; }),
              AllOf(HasSubstr("'huge.array'"), HasSubstr("does not fit")));

  GgufBuilder s = tiny_llama();
  s.raw_kv("huge.string", 8, le<uint64_t>(uint64_t{1} << 62) + "abc");
  test::write_file(dir.path("string.gguf"), s.bytes());
  EXPECT_THAT(test::error_of<Error>([&] { GgufFile{dir.path("string.gguf")}; }),
              AllOf(HasSubstr("'huge.string'"), HasSubstr("truncated")));

  GgufBuilder d = tiny_llama();
  d.tensor("blk.9.weird", {uint64_t{1} << 40, uint64_t{1} << 40}, 0, "");
  test::write_file(dir.path("dims.gguf"), d.bytes());
  EXPECT_THAT(test::error_of<Error>([&] { GgufFile{dir.path("dims.gguf")}; }),
              AllOf(HasSubstr("'blk.9.weird'"), HasSubstr("overflow")));
}

// An array holds no more memory than its elements take in the file: a u8 element costs one byte,
// not a GgufValue (48 bytes), so a file cannot claim memory out of proportion to its size.
TEST(GgufReader, ScalarArraysTakeTheirFileSizeInMemory) {
  test::TempDir dir;
  constexpr uint64_t kCount = uint64_t{1} << 22;  // 4 MiB of u8 elements
  {
    GgufBuilder b = tiny_llama();
    std::string elements(kCount, '\x07');
    elements.back() = '\x2a';
    b.raw_kv("big.u8s", 9, le<uint32_t>(0) + le<uint64_t>(kCount) + elements);
    test::write_file(dir.path("big.gguf"), b.bytes());
  }
  const auto heap_bytes = [] {
    const struct mallinfo2 info = ::mallinfo2();
    return static_cast<int64_t>(info.uordblks + info.hblkhd);
  };
  const int64_t before = heap_bytes();
  const GgufFile f(dir.path("big.gguf"));
  const int64_t held = heap_bytes() - before;
  EXPECT_LT(held, static_cast<int64_t>(2 * kCount)) << "heap bytes held by the parsed file";
  const GgufArray* array = f.find("big.u8s")->as_array();
  ASSERT_NE(array, nullptr);
  ASSERT_EQ(array->size(), kCount);
  EXPECT_EQ(array->at(0).as_int(), 7);
  EXPECT_EQ(array->at(kCount - 1).as_int(), 42);
  EXPECT_EQ(f.get_int_array("big.u8s")->back(), 42);
  EXPECT_EQ(f.find("big.u8s")->type_str(), "array of u8");
}

// ---- dequantization ----------------------------------------------------------------------------

TEST(GgufDequantize, UnsupportedTypeNamesTensorAndType) {
  test::TempDir dir;
  GgufBuilder b = tiny_llama();
  b.tensor("blk.0.q2k", {256}, 10, std::string(84, '\0'));  // one Q2_K block
  test::write_file(dir.path("q2k.gguf"), b.bytes());
  const GgufFile f(dir.path("q2k.gguf"));
  const std::string message = test::error_of<Error>([&] { dequantize(f, *f.find_tensor("blk.0.q2k")); });
  EXPECT_THAT(message, AllOf(HasSubstr(dir.path("q2k.gguf")), HasSubstr("'blk.0.q2k'"), HasSubstr("Q2_K"),
                             HasSubstr("Q4_K"), HasSubstr("llama-quantize")));
}

// Every type the gguf package writes, block by block against its dequantizer. The comparison is
// bit-exact: both sides do the same float32 operations in the same order (ggml's reference
// dequantizers), and a product of an f16 scale and a small integer code is exact in float32.
TEST(GgufDequantize, MatchesGgufPackageBitForBit) {
  const std::string python = test::reference_python("gguf, numpy");
  FE_NEED_REFERENCE(!python.empty(), "the gguf Python package");
  test::TempDir dir;
  ASSERT_EQ(run(python + " " + kScript + " quants " + dir.path()), "");
  const GgufFile f(dir.path("quants.gguf"));
  EXPECT_EQ(f.alignment(), 64u);
  const char* types[] = {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"};
  for (const char* type : types) {
    const GgufTensorInfo* data = f.find_tensor(std::string("data.") + type);
    const GgufTensorInfo* expected = f.find_tensor(std::string("expected.") + type);
    ASSERT_TRUE(data && expected) << type;
    EXPECT_EQ(ggml_type_name(data->type), type);
    const Tensor got = dequantize(f, *data);
    ASSERT_EQ(got.shape(), expected->shape()) << type;
    const auto* want = reinterpret_cast<const float*>(expected->data);
    int64_t differing = 0;
    for (int64_t i = 0; i < got.numel(); ++i) differing += std::memcmp(&got.as<float>()[i], &want[i], 4) != 0;
    EXPECT_EQ(differing, 0) << type << ": elements differing from gguf.quants.dequantize out of " << got.numel();
  }

  // The metadata of every value type, as the package wrote it.
  const auto our_type_name = [](const std::string& package_name) {
    const std::map<std::string, std::string> names = {
        {"uint8", "u8"},  {"int8", "i8"},    {"uint16", "u16"}, {"int16", "i16"},   {"uint32", "u32"},
        {"int32", "i32"}, {"uint64", "u64"}, {"int64", "i64"},  {"float32", "f32"}, {"float64", "f64"}};
    const auto it = names.find(package_name);
    return it == names.end() ? package_name : it->second;
  };
  const json metadata = read_json(dir.path("metadata.json"));
  for (const auto& [key, entry] : metadata.items()) {
    const GgufValue* value = f.find(key);
    ASSERT_NE(value, nullptr) << key;
    const std::string type = entry["type"];
    const json& v = entry["value"];
    if (type == "string") {
      EXPECT_EQ(*value->as_string(), v.get<std::string>()) << key;
    } else if (type == "bool") {
      EXPECT_EQ(std::get<bool>(value->value), v.get<bool>()) << key;
    } else if (type == "array") {
      const GgufArray& array = *value->as_array();
      if (!entry["element_type"].is_null()) {
        EXPECT_EQ(gguf_value_type_name(array.element_type), our_type_name(entry["element_type"])) << key;
      }
      ASSERT_EQ(array.size(), v.size()) << key;
      for (size_t i = 0; i < v.size(); ++i) {
        const GgufValue e = array.at(i);
        EXPECT_EQ(e.type, array.element_type) << key;
        if (v[i].is_string()) {
          EXPECT_EQ(*e.as_string(), v[i].get<std::string>()) << key;
        } else if (v[i].is_boolean()) {
          EXPECT_EQ(std::get<bool>(e.value), v[i].get<bool>()) << key;
        } else if (v[i].is_number_unsigned() && v[i].get<uint64_t>() > uint64_t{INT64_MAX}) {
          EXPECT_EQ(std::get<uint64_t>(e.value), v[i].get<uint64_t>()) << key << "[" << i << "]";
        } else if (v[i].is_number_integer()) {
          EXPECT_EQ(e.as_int(), v[i].get<int64_t>()) << key << "[" << i << "]";
        } else if (v[i].is_number_float()) {
          EXPECT_EQ(e.as_double(), v[i].get<double>()) << key << "[" << i << "]";
        } else {
          ASSERT_TRUE(e.as_array()) << key;
          EXPECT_EQ(e.as_array()->size(), v[i].size()) << key;
          for (size_t j = 0; j < v[i].size(); ++j) EXPECT_EQ(e.as_array()->at(j).as_int(), v[i][j].get<int64_t>());
        }
      }
    } else if (type == "uint64") {
      EXPECT_EQ(std::get<uint64_t>(value->value), v.get<uint64_t>()) << key;
    } else if (type == "float32" || type == "float64") {
      EXPECT_EQ(value->as_double(), v.get<double>()) << key;
    } else {
      EXPECT_EQ(value->as_int(), v.get<int64_t>()) << key;
    }
    EXPECT_EQ(gguf_value_type_name(value->type), our_type_name(type)) << key;
  }
  // Whole-array reads convert each packed element.
  EXPECT_EQ(f.get_int_array("test.array_i8"), (std::vector<int64_t>{-128, -1, 127}));
  EXPECT_EQ(f.get_double_array("test.array_u8"), (std::vector<double>{0, 200, 255}));
  EXPECT_THAT(test::error_of<Error>([&] { f.get_int_array("test.array_u64"); }),
              AllOf(HasSubstr("'test.array_u64'"), HasSubstr("element 0 is beyond the int64 range")));
  EXPECT_THAT(
      test::error_of<Error>([&] { f.get_int_array("test.array_f64"); }),
      AllOf(HasSubstr("'test.array_f64'"), HasSubstr("array of f64"), HasSubstr("expected an array of integers")));
}

// ---- import ------------------------------------------------------------------------------------

TEST(GgufImport, UndoesTheRotaryRowPermutationOfLlama) {
  test::TempDir dir;
  test::write_file(dir.path("tiny.gguf"), tiny_llama().bytes());
  const GgufImportSummary summary = import_gguf(dir.path("tiny.gguf"), dir.path("out"));
  EXPECT_EQ(summary.architecture, "llama");
  EXPECT_EQ(summary.tensors, 11u);
  const SafetensorsCheckpoint out(dir.path("out"));
  // GGUF row 2j + i of head h is HF row h·hd + i·hd/2 + j; the hand-made file holds 100·row + col.
  for (const auto& [name, heads] : {std::pair{"q_proj", kTinyHeads}, std::pair{"k_proj", kTinyKvHeads}}) {
    const Tensor w = out.load(std::string("model.layers.0.self_attn.") + name + ".weight",
                              {heads * kTinyHeadDim, kTinyHidden}, DType::f32);
    const int64_t half = kTinyHeadDim / 2;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < half; ++j) {
          const int64_t hf_row = h * kTinyHeadDim + i * half + j, gguf_row = h * kTinyHeadDim + 2 * j + i;
          EXPECT_EQ(w.as<float>()[hf_row * kTinyHidden + 3], 100.0f * gguf_row + 3) << name << " row " << hf_row;
        }
  }
  // v is not permuted; the embedding keeps its rows.
  const Tensor v = out.load("model.layers.0.self_attn.v_proj.weight", {kTinyHeadDim, kTinyHidden}, DType::f32);
  EXPECT_EQ(v.as<float>()[1 * kTinyHidden], 100.0f);
  EXPECT_EQ(out.find("lm_head.weight"), nullptr);  // tied

  const LlamaConfig config = LlamaConfig::load(dir.path("out"));
  EXPECT_EQ(config.hidden_size, kTinyHidden);
  EXPECT_EQ(config.num_key_value_heads, kTinyKvHeads);
  EXPECT_EQ(config.head_dim, kTinyHeadDim);
  EXPECT_TRUE(config.tie_word_embeddings);
  EXPECT_EQ(config.rms_norm_eps, 1e-5);
  const json tokenizer = read_json(dir.path("out/tokenizer.json"));
  EXPECT_EQ(tokenizer["model"]["merges"], json::parse(R"([["a", "b"]])"));
  EXPECT_EQ(tokenizer["added_tokens"].size(), 2u);
}

TEST(GgufImport, UnsupportedArchitectureNamesItAndTheSupportedOnes) {
  test::TempDir dir;
  test::write_file(dir.path("gemma.gguf"), tiny_llama("gemma").bytes());
  EXPECT_THAT(test::error_of<Error>([&] { import_gguf(dir.path("gemma.gguf"), dir.path("out")); }),
              AllOf(HasSubstr(dir.path("gemma.gguf")), HasSubstr("'general.architecture'"), HasSubstr("\"gemma\""),
                    HasSubstr("supported: llama, qwen2")));
  EXPECT_FALSE(std::filesystem::exists(dir.path("out/config.json")));
}

TEST(GgufImport, UnknownPreTokenizerListsTheKnownOnes) {
  test::TempDir dir;
  test::write_file(dir.path("pre.gguf"), tiny_llama("llama", "chatglm-bpe").bytes());
  EXPECT_THAT(test::error_of<Error>([&] { import_gguf(dir.path("pre.gguf"), dir.path("out")); }),
              AllOf(HasSubstr(dir.path("pre.gguf")), HasSubstr("'tokenizer.ggml.pre'"), HasSubstr("\"chatglm-bpe\""),
                    HasSubstr("llama-bpe"), HasSubstr("smollm"), HasSubstr("HF directory")));
  EXPECT_FALSE(std::filesystem::exists(dir.path("out/model.safetensors")));
}

TEST(GgufImport, UnsupportedTensorTypeNamesTheTensorAndType) {
  test::TempDir dir;
  GgufBuilder b = tiny_llama();
  std::string f64_embedding;
  for (float v : coded(kTinyVocab, kTinyHidden)) f64_embedding += le<double>(v);
  b.tensor("token_embd.weight", {kTinyHidden, kTinyVocab}, 28, f64_embedding);  // F64: readable, not imported
  test::write_file(dir.path("f64.gguf"), b.bytes());
  EXPECT_THAT(test::error_of<Error>([&] { import_gguf(dir.path("f64.gguf"), dir.path("out")); }),
              AllOf(HasSubstr(dir.path("f64.gguf")), HasSubstr("'token_embd.weight'"), HasSubstr("type F64"),
                    HasSubstr("supported: F32, F16, BF16"), HasSubstr("llama-quantize")));
}

// The config.json rope_scaling gguf_hf_config derives from a hand-made file (an Error if it refuses it).
json imported_rope_scaling(const GgufBuilder& b, const test::TempDir& dir) {
  test::write_file(dir.path("rope.gguf"), b.bytes());
  const GgufFile f(dir.path("rope.gguf"));
  return gguf_hf_config(f)["rope_scaling"];
}

// Older llama.cpp conversions carry ARCH.rope.scale_linear instead of the rope.scaling.* keys (which
// LinearRopeScalingRoundTripsAnHfModel covers as the gguf package writes them).
TEST(GgufImport, LinearRopeScalingFromTheLegacyKeyAndItsErrors) {
  test::TempDir dir;
  GgufBuilder legacy = tiny_llama();
  legacy.f32("llama.rope.scale_linear", 2.0f);
  EXPECT_EQ(imported_rope_scaling(legacy, dir), json::parse(R"({"rope_type": "linear", "factor": 2.0})"));

  GgufBuilder no_factor = tiny_llama();
  no_factor.string("llama.rope.scaling.type", "linear");
  EXPECT_THAT(test::error_of<Error>([&] { imported_rope_scaling(no_factor, dir); }),
              AllOf(HasSubstr("'llama.rope.scaling.factor'"), HasSubstr("linear rope scaling needs its factor")));

  GgufBuilder both = tiny_llama();
  both.string("llama.rope.scaling.type", "linear");
  both.f32("llama.rope.scaling.factor", 4.0f);
  both.f32_tensor("rope_freqs.weight", {kTinyHeadDim / 2}, {1.0f, 4.0f});
  EXPECT_THAT(test::error_of<Error>([&] { imported_rope_scaling(both, dir); }),
              AllOf(HasSubstr("'rope_freqs.weight'"), HasSubstr("linear rope scaling are both present")));

  GgufBuilder yarn = tiny_llama();
  yarn.string("llama.rope.scaling.type", "yarn");
  EXPECT_THAT(
      test::error_of<Error>([&] { imported_rope_scaling(yarn, dir); }),
      AllOf(HasSubstr("'llama.rope.scaling.type'"), HasSubstr("\"yarn\""), HasSubstr("supported: none, linear")));
}

// Hyper-parameters are checked against the tensors before any product of them is formed: a hostile
// value is an error naming its key, never a signed overflow or a plan of 2^40 layers.
std::string import_error(const GgufBuilder& b, const test::TempDir& dir) {
  test::write_file(dir.path("hostile.gguf"), b.bytes());
  const std::string message = test::error_of<Error>([&] { import_gguf(dir.path("hostile.gguf"), dir.path("out")); });
  EXPECT_FALSE(std::filesystem::exists(dir.path("out"))) << "nothing is written for a refused file";
  return message;
}

TEST(GgufImport, HostileHeadCountNamesItsKey) {
  test::TempDir dir;
  GgufBuilder b = tiny_llama();
  b.u64("llama.attention.head_count", uint64_t{1} << 62);  // 2^62 heads of 4 dims: 2^64 rows
  b.u64("llama.attention.head_count_kv", uint64_t{1} << 62);
  b.u32("llama.attention.key_length", kTinyHeadDim);
  EXPECT_THAT(import_error(b, dir),
              AllOf(HasSubstr(dir.path("hostile.gguf")), HasSubstr("'llama.attention.head_count'"),
                    HasSubstr("4611686018427387904"), HasSubstr("blk.0.attn_q.weight")));
}

TEST(GgufImport, HostileBlockCountNamesItsKey) {
  test::TempDir dir;
  GgufBuilder b = tiny_llama();
  b.u64("llama.block_count", uint64_t{1} << 40);
  EXPECT_THAT(import_error(b, dir), AllOf(HasSubstr("'llama.block_count'"), HasSubstr("1099511627776"),
                                          HasSubstr("the tensors of 1 layer"), HasSubstr("blk.1.attn_norm.weight")));
}

TEST(GgufImport, HyperParametersThatContradictTheTensorsNameTheirKey) {
  test::TempDir dir;
  GgufBuilder kv = tiny_llama();
  kv.u32("llama.attention.head_count_kv", 2);  // divides the 2 heads, but attn_k holds one head
  EXPECT_THAT(import_error(kv, dir),
              AllOf(HasSubstr("'llama.attention.head_count_kv'"), HasSubstr("blk.0.attn_k.weight")));
  GgufBuilder ffn = tiny_llama();
  ffn.u32("llama.feed_forward_length", 3);
  EXPECT_THAT(import_error(ffn, dir),
              AllOf(HasSubstr("'llama.feed_forward_length'"), HasSubstr("blk.0.ffn_gate.weight")));
  GgufBuilder negative = tiny_llama();
  negative.raw_kv("llama.attention.head_count", 5, le<int32_t>(-2));
  EXPECT_THAT(import_error(negative, dir),
              AllOf(HasSubstr("'llama.attention.head_count'"), HasSubstr("-2"), HasSubstr("positive")));
}

std::vector<std::string> tokenizer_corpus() {
  return {"Hello world! It's a test, isn't it? They'll say we've done it.",
          "def f(x):\n    return x * 2  # code\n\tindented",
          "digits 1234567890 and 3.14159, 2024-06-01",
          "  whitespace   runs \n\n\n end  ",
          "café naïve résumé e\u0301 (combining accent)",
          "東京は日本の首都です。中文分词测试 한국어",
          "emoji 🙂🚀 and symbols ©®™",
          "<|im_start|>user\nhi<|im_end|>",
          "<|begin_of_text|>start <|eot_id|> end",
          "a <tool> call and <|endoftext|>",
          ""};
}

// The corpus encoded by HF tokenizers with `tokenizer_json`.
json hf_encode(const std::string& python, const std::string& tokenizer_json, const std::string& dir,
               const std::string& tag) {
  const std::string corpus = dir + "/corpus.json", out = dir + "/" + tag + ".ids.json";
  test::write_file(corpus, json{{"lines", tokenizer_corpus()}}.dump());
  const std::string failure = run(python + " " + kScript + " encode " + tokenizer_json + " " + corpus + " " + out);
  EXPECT_EQ(failure, "");
  return failure.empty() ? read_json(out) : json();
}

void expect_same_tensors(const std::string& original_dir, const std::string& imported_dir) {
  const SafetensorsCheckpoint original(original_dir), imported(imported_dir);
  EXPECT_EQ(imported.names(), original.names());
  for (const std::string& name : original.names()) {
    const TensorInfo* want = original.find(name);
    const TensorInfo* got = imported.find(name);
    ASSERT_TRUE(got) << name;
    ASSERT_EQ(got->shape, want->shape) << name;
    ASSERT_EQ(got->dtype, DType::f32) << name;
    EXPECT_EQ(std::memcmp(got->data, want->data, want->nbytes), 0) << name << " differs from the HF original";
  }
}

// A random HF model and tokenizer, converted as llama.cpp does, imported back: the weights exactly,
// the config's fields, and the tokenizer's ids under HF tokenizers.
void check_round_trip(const std::string& kind, const std::optional<std::string>& pre) {
  const std::string python = test::reference_python("gguf, numpy, tokenizers");
  FE_NEED_REFERENCE(!python.empty(), "the gguf and tokenizers Python packages");
  test::TempDir dir;
  ASSERT_EQ(run(python + " " + kScript + " model " + kind + " " + dir.path()), "");
  const GgufImportSummary summary = import_gguf(dir.path("model.gguf"), dir.path("out"));
  const json expected = read_json(dir.path("expected.json"))["config"];
  const std::string arch = expected["model_type"];
  EXPECT_EQ(summary.architecture, arch);
  if (expected["rope_scaling"].is_object() && expected["rope_scaling"]["rope_type"] == "llama3") {
    EXPECT_THAT(testing::PrintToString(summary.notes), HasSubstr("llama3 derived from rope_freqs"));
  }
  expect_same_tensors(dir.path("hf"), dir.path("out"));

  // The engine reads the directory as it reads any HF checkpoint.
  const LlamaConfig engine_config = LlamaConfig::load(dir.path("out"));
  EXPECT_EQ(model_type_name(engine_config.model_type), arch);
  EXPECT_EQ(engine_config.has_qkv_bias(), arch == "qwen2");
  EXPECT_EQ(LlamaWeights::load(dir.path("out"), DType::f32).layers.size(), 2u);

  const json config = read_json(dir.path("out/config.json"));
  for (const auto& [key, value] : expected.items()) EXPECT_EQ(config[key], value) << "config.json key " << key;
  EXPECT_EQ(config["torch_dtype"], "float32");

  const json& rope_scaling = expected["rope_scaling"];
  if (rope_scaling.is_object()) {
    const RopeScaling::Type type =
        rope_scaling["rope_type"] == "linear" ? RopeScaling::Type::linear : RopeScaling::Type::llama3;
    EXPECT_EQ(engine_config.rope_scaling.type, type);
    EXPECT_EQ(engine_config.rope_scaling.factor, rope_scaling["factor"].get<double>());
  }

  const GgufFile f(dir.path("model.gguf"));
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), pre);
  const json original_ids = hf_encode(python, dir.path("hf/tokenizer.json"), dir.path(), "original");
  const json imported_ids = hf_encode(python, dir.path("out/tokenizer.json"), dir.path(), "imported");
  const std::vector<std::string> corpus = tokenizer_corpus();
  for (const char* field : {"ids", "ids_with_special_tokens", "decoded"})
    for (size_t i = 0; i < corpus.size(); ++i)
      EXPECT_EQ(imported_ids[field][i], original_ids[field][i]) << field << " of \"" << corpus[i] << "\"";

  const json tokenizer_config = read_json(dir.path("out/tokenizer_config.json"));
  EXPECT_EQ(tokenizer_config["chat_template"], *f.get_string("tokenizer.chat_template"));
  EXPECT_EQ(tokenizer_config["model_max_length"], expected["max_position_embeddings"]);
  const json generation = read_json(dir.path("out/generation_config.json"));
  EXPECT_EQ(generation["eos_token_id"], expected["eos_token_id"]);
  EXPECT_EQ(tokenizer_config["eos_token"],
            f.get_string_array("tokenizer.ggml.tokens")->at(expected["eos_token_id"].get<size_t>()));
}

TEST(GgufImport, LlamaRoundTripsAnHfModel) { check_round_trip("llama", "llama-bpe"); }

// ARCH.rope.scaling.type "linear" and ARCH.rope.scaling.factor, as convert_hf_to_gguf.py writes an
// HF rope_scaling {rope_type: linear}.
TEST(GgufImport, LinearRopeScalingRoundTripsAnHfModel) { check_round_trip("llama-linear", "llama-bpe"); }

TEST(GgufImport, Qwen2RoundTripsAnHfModelWithBiases) { check_round_trip("qwen2", "qwen2"); }

// Tokenizer model "llama": BPE merges rebuilt from SentencePiece scores.
TEST(GgufImport, SentencePieceLlamaRoundTripsAnHfModel) { check_round_trip("llama-spm", std::nullopt); }

TEST(GgufImport, Bf16StorageRoundsEachWeight) {
  test::TempDir dir;
  test::write_file(dir.path("tiny.gguf"), tiny_llama().bytes());
  GgufImportOptions options;
  options.dtype = DType::bf16;
  size_t reported = 0;
  options.on_tensor = [&](size_t index, size_t count, const std::string&, const std::string& type) {
    EXPECT_EQ(index, reported++);
    EXPECT_EQ(count, 11u);
    EXPECT_EQ(type, "F32");
  };
  import_gguf(dir.path("tiny.gguf"), dir.path("out"), options);
  EXPECT_EQ(reported, 11u);
  const SafetensorsFile out(dir.path("out/model.safetensors"));
  const TensorInfo* embed = out.find("model.embed_tokens.weight");
  ASSERT_EQ(embed->dtype, DType::bf16);
  const auto* bits = static_cast<const uint16_t*>(embed->data);
  const std::vector<float> want = coded(kTinyVocab, kTinyHidden);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(bits[i], f32_to_bf16(want[i]));
  EXPECT_EQ(read_json(dir.path("out/config.json"))["torch_dtype"], "bfloat16");
}

// The real SmolLM2-135M-Instruct (Q4_1 with a Q8_0 embedding).
TEST(GgufImport, SmolLM2) {
  const std::string python = test::reference_python("gguf, numpy, tokenizers");
  FE_NEED_REFERENCE(!python.empty(), "the gguf and tokenizers Python packages");
  const std::string gguf = test::smollm2_gguf();
  FE_NEED_REFERENCE(!gguf.empty(), "the SmolLM2-135M-Instruct GGUF");
  test::TempDir dir;
  const auto start = std::chrono::steady_clock::now();
  const GgufImportSummary summary = import_gguf(gguf, dir.path("out"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ info     ] import of " << gguf << ": " << summary.parameters << " parameters in " << seconds
            << " s\n";

  const LlamaConfig config = LlamaConfig::load(dir.path("out"));
  EXPECT_EQ(config.num_hidden_layers, 30);
  EXPECT_EQ(config.hidden_size, 576);
  EXPECT_EQ(config.intermediate_size, 1536);
  EXPECT_EQ(config.num_attention_heads, 9);
  EXPECT_EQ(config.num_key_value_heads, 3);
  EXPECT_EQ(config.head_dim, 64);
  EXPECT_EQ(config.vocab_size, 49152);
  EXPECT_TRUE(config.tie_word_embeddings);
  EXPECT_EQ(config.rope_theta, 100000.0);
  EXPECT_EQ(config.rms_norm_eps, 1e-5);
  EXPECT_EQ(config.max_position_embeddings, 8192);
  EXPECT_EQ(config.bos_token_id, 1);
  EXPECT_EQ(config.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(summary.parameters, config.num_parameters());

  // Tensors against gguf.quants, with the q/k permutation undone by the reference independently.
  ASSERT_EQ(run(python + " " + kScript + " smollm " + gguf + " " + dir.path()), "");
  const SafetensorsFile expected(dir.path("expected.safetensors"));
  const SafetensorsCheckpoint imported(dir.path("out"));
  ASSERT_EQ(expected.tensors().size(), 7u);
  for (const TensorInfo& want : expected.tensors()) {
    const TensorInfo* got = imported.find(want.name);
    ASSERT_TRUE(got) << want.name;
    EXPECT_EQ(got->shape[-1], want.shape[-1]) << want.name;
    // The reference keeps only the embedding's first rows: compare those.
    EXPECT_EQ(std::memcmp(got->data, want.data, want.nbytes), 0) << want.name;
  }

  // The rebuilt tokenizer loads in HF tokenizers and encodes losslessly.
  const json ids = hf_encode(python, dir.path("out/tokenizer.json"), dir.path(), "smollm");
  const std::vector<std::string> corpus = tokenizer_corpus();
  for (size_t i = 0; i < corpus.size(); ++i) {
    EXPECT_EQ(ids["decoded"][i], corpus[i]) << "decode(encode(x)) != x";
    EXPECT_EQ(ids["ids_with_special_tokens"][i], ids["ids"][i]) << "SmolLM2 adds no BOS";
    for (const json& id : ids["ids"][i]) EXPECT_LT(id.get<int64_t>(), 49152);
  }
  EXPECT_EQ(ids["ids"][7].front(), 1) << "<|im_start|> is one special token";
  EXPECT_EQ(ids["ids"][7].back(), 2) << "<|im_end|> is one special token";
  const json tokenizer_config = read_json(dir.path("out/tokenizer_config.json"));
  EXPECT_EQ(tokenizer_config["bos_token"], "<|im_start|>");
  EXPECT_EQ(tokenizer_config["eos_token"], "<|im_end|>");
  EXPECT_EQ(tokenizer_config["unk_token"], "<|endoftext|>");
  EXPECT_EQ(tokenizer_config["add_bos_token"], false);
  EXPECT_THAT(tokenizer_config["chat_template"].get<std::string>(), HasSubstr("<|im_start|>"));
  const json generation = read_json(dir.path("out/generation_config.json"));
  EXPECT_EQ(generation["eos_token_id"], 2);
  EXPECT_EQ(generation["pad_token_id"], 2);
}

// ---- the CLI -----------------------------------------------------------------------------------

TEST(GgufCli, HelpExplainsWhatIsWritten) {
  test::TempDir dir;
  ASSERT_EQ(std::system((test::cli_path() + " import-gguf --help > " + dir.path("help.txt")).c_str()), 0);
  const std::string help = test::read_file(dir.path("help.txt"));
  for (const char* text : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                           "generation_config.json", "Q4_K", "Q6_K", "BF16", "llama-bpe", "smollm", "--dtype"})
    EXPECT_THAT(help, HasSubstr(text));
}

TEST(GgufCli, ImportsAFileAndReportsProgress) {
  test::TempDir dir;
  test::write_file(dir.path("tiny.gguf"), tiny_llama().bytes());
  const std::string command = test::cli_path() + " import-gguf " + dir.path("tiny.gguf") + " --out " + dir.path("out") +
                              " --dtype bf16 > " + dir.path("stdout.txt") + " 2> " + dir.path("stderr.txt");
  ASSERT_EQ(std::system(command.c_str()), 0) << test::read_file(dir.path("stderr.txt"));
  EXPECT_THAT(test::read_file(dir.path("stdout.txt")), AllOf(HasSubstr("wrote"), HasSubstr("llama, 11 tensors")));
  EXPECT_THAT(test::read_file(dir.path("stderr.txt")),
              AllOf(HasSubstr("tensor 1 of 11"), HasSubstr("tensor 11 of 11")));
  for (const char* file :
       {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    EXPECT_TRUE(std::filesystem::exists(dir.path(std::string("out/") + file))) << file;

  test::write_file(dir.path("broken.gguf"), "GGUF\x03");
  const int status = std::system((test::cli_path() + " import-gguf " + dir.path("broken.gguf") + " --out " +
                                  dir.path("out2") + " 2> " + dir.path("error.txt"))
                                     .c_str());
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_THAT(test::read_file(dir.path("error.txt")),
              AllOf(HasSubstr("fedengine: error: GGUF"), HasSubstr("broken.gguf"), HasSubstr("truncated")));
}

}  // namespace
}  // namespace fe
