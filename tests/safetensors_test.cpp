#include "engine/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kernels/half.h"
#include "tests/test_files.h"

namespace fe {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;

// Each test gets a fresh directory under the system temp directory, removed afterwards.
class SafetensorsTest : public testing::Test {
 protected:
  void SetUp() override {
    const std::string test_name = testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::temp_directory_path() / ("fe_safetensors_test_" + test_name + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& file_name) const { return (dir_ / file_name).string(); }

  fs::path dir_;
};

// The raw little-endian bytes of `values`, as they lie in a safetensors data section.
template <class T>
std::string bytes_of(std::initializer_list<T> values) {
  std::string bytes(values.size() * sizeof(T), '\0');
  std::memcpy(bytes.data(), values.begin(), bytes.size());
  return bytes;
}

// A safetensors file assembled by hand: the 8-byte little-endian header length, the header text
// exactly as given (no padding added), then the data section.
std::string assemble(const std::string& header, const std::string& data) {
  std::string file;
  for (int i = 0; i < 8; ++i) file += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return file + header + data;
}

// A tensor to write: its bytes live in `bytes`, which the View points into.
struct Sample {
  std::string name;
  DType dtype;
  Shape shape;
  std::string bytes;
  View view() { return View{bytes.empty() ? nullptr : bytes.data(), dtype, shape, Device::cpu}; }
};

std::vector<std::pair<std::string, View>> views_of(std::vector<Sample>& samples) {
  std::vector<std::pair<std::string, View>> views;
  for (Sample& sample : samples) views.emplace_back(sample.name, sample.view());
  return views;
}

template <class T>
std::vector<T> elements_of(const Tensor& tensor) {
  return std::vector<T>(tensor.as<T>(), tensor.as<T>() + tensor.numel());
}

// ---- round trips ------------------------------------------------------------------------------

TEST_F(SafetensorsTest, RoundTripsEveryDtypeInTheGivenOrder) {
  std::vector<Sample> samples = {
      {"z.f32", DType::f32, {2, 3}, bytes_of<float>({1.5f, -2.f, 3.25f, 0.f, -0.5f, 7.f})},
      {"y.f64", DType::f64, {2}, bytes_of<double>({1e-300, -2.5})},
      {"x.bf16", DType::bf16, {3}, bytes_of<uint16_t>({f32_to_bf16(1.f), f32_to_bf16(-3.5f), f32_to_bf16(0.1f)})},
      {"w.f16", DType::f16, {1, 3}, bytes_of<uint16_t>({f32_to_f16(1.f), f32_to_f16(-3.5f), f32_to_f16(0.1f)})},
      {"v.i32", DType::i32, {3}, bytes_of<int32_t>({-7, 0, std::numeric_limits<int32_t>::max()})},
      {"u.i64", DType::i64, {2}, bytes_of<int64_t>({std::numeric_limits<int64_t>::min(), 42})},
      {"t.scalar", DType::f32, {}, bytes_of<float>({9.f})},
      {"s.rank5", DType::f32, {1, 1, 1, 2, 1}, bytes_of<float>({4.f, 5.f})},
      {"r.empty", DType::bf16, {0, 4}, ""},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"round", "3"}};
  write_safetensors(path("all.safetensors"), views_of(samples), metadata);

  const SafetensorsFile file(path("all.safetensors"));
  EXPECT_EQ(file.path(), path("all.safetensors"));
  EXPECT_EQ(file.metadata(), metadata);
  ASSERT_EQ(file.tensors().size(), samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    const TensorInfo& info = file.tensors()[i];
    SCOPED_TRACE(samples[i].name);
    EXPECT_EQ(info.name, samples[i].name);  // header order is the written order, not sorted
    EXPECT_EQ(info.dtype, samples[i].dtype);
    EXPECT_EQ(info.shape, samples[i].shape);
    EXPECT_EQ(info.file, path("all.safetensors"));
    ASSERT_EQ(info.nbytes, samples[i].bytes.size());
    EXPECT_EQ(std::string(static_cast<const char*>(info.data), info.nbytes), samples[i].bytes);
    EXPECT_EQ(file.find(samples[i].name), &info);
  }
  EXPECT_EQ(file.find("absent"), nullptr);

  const SafetensorsCheckpoint checkpoint(path("all.safetensors"));
  for (const Sample& sample : samples) {
    SCOPED_TRACE(sample.name);
    const Tensor loaded = checkpoint.load(sample.name, sample.shape, sample.dtype);
    EXPECT_EQ(loaded.device(), Device::cpu);
    EXPECT_EQ(std::string(static_cast<const char*>(loaded.data()), loaded.nbytes()), sample.bytes);
  }
}

TEST_F(SafetensorsTest, LoadConvertsBetweenFloatDtypes) {
  const std::vector<float> floats = {1.f, -2.5f, 0.1f, 3.14159f, 65504.f, 1e-3f, -0.f, 1e-8f};
  std::vector<uint16_t> as_bf16, as_f16;
  for (float f : floats) {
    as_bf16.push_back(f32_to_bf16(f));
    as_f16.push_back(f32_to_f16(f));
  }
  std::vector<Sample> samples = {
      {"f32", DType::f32, {8}, std::string(reinterpret_cast<const char*>(floats.data()), floats.size() * 4)},
      {"bf16", DType::bf16, {8}, std::string(reinterpret_cast<const char*>(as_bf16.data()), as_bf16.size() * 2)},
      {"f16", DType::f16, {8}, std::string(reinterpret_cast<const char*>(as_f16.data()), as_f16.size() * 2)},
      {"i32", DType::i32, {2}, bytes_of<int32_t>({-5, 1 << 30})},
  };
  write_safetensors(path("mixed.safetensors"), views_of(samples));
  const SafetensorsCheckpoint checkpoint(path("mixed.safetensors"));

  EXPECT_EQ(elements_of<uint16_t>(checkpoint.load("f32", {8}, DType::bf16)), as_bf16);
  EXPECT_EQ(elements_of<uint16_t>(checkpoint.load("f32", {8}, DType::f16)), as_f16);
  const std::vector<double> as_f64 = elements_of<double>(checkpoint.load("f32", {8}, DType::f64));
  for (size_t i = 0; i < floats.size(); ++i) EXPECT_EQ(as_f64[i], static_cast<double>(floats[i]));

  const std::vector<float> from_bf16 = elements_of<float>(checkpoint.load("bf16", {8}, DType::f32));
  const std::vector<float> from_f16 = elements_of<float>(checkpoint.load("f16", {8}, DType::f32));
  for (size_t i = 0; i < floats.size(); ++i) {
    EXPECT_EQ(from_bf16[i], bf16_to_f32(as_bf16[i]));
    EXPECT_EQ(from_f16[i], f16_to_f32(as_f16[i]));
  }
  EXPECT_EQ(elements_of<int64_t>(checkpoint.load("i32", {2}, DType::i64)), (std::vector<int64_t>{-5, 1 << 30}));
}

// ---- the format, checked independently of write_safetensors --------------------------------------

TEST_F(SafetensorsTest, ReadsAHandAssembledFile) {
  std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("b.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("a.bias":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
      R"("c":{"dtype":"I64","shape":[],"data_offsets":[22,30]}})";
  // Other writers need not align anything: make the data start unaligned for every dtype.
  while ((8 + header.size()) % 4 != 1) header += ' ';
  const std::string data = bytes_of<float>({1.f, 2.f, -3.f, 0.25f}) +
                           bytes_of<uint16_t>({0x3f80, 0xc000, 0x3e80}) +  // bf16 1, -2, 0.25
                           bytes_of<int64_t>({-123456789012345});
  test::write_file(path("hand.safetensors"), assemble(header, data));

  const SafetensorsFile file(path("hand.safetensors"));
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.tensors()[0].name, "b.weight");
  EXPECT_EQ(file.tensors()[1].name, "a.bias");
  EXPECT_EQ(file.tensors()[2].name, "c");
  EXPECT_EQ(file.tensors()[1].dtype, DType::bf16);
  EXPECT_EQ(file.tensors()[2].shape, Shape{});
  EXPECT_EQ(file.tensors()[2].nbytes, 8u);

  const SafetensorsCheckpoint checkpoint(path("hand.safetensors"));
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"a.bias", "b.weight", "c"}));
  EXPECT_EQ(elements_of<float>(checkpoint.load("b.weight", {2, 2}, DType::f32)),
            (std::vector<float>{1.f, 2.f, -3.f, 0.25f}));
  EXPECT_EQ(elements_of<float>(checkpoint.load("a.bias", {3}, DType::f32)), (std::vector<float>{1.f, -2.f, 0.25f}));
  EXPECT_EQ(elements_of<int64_t>(checkpoint.load("c", {}, DType::i64)), (std::vector<int64_t>{-123456789012345}));
}

TEST_F(SafetensorsTest, WrittenFileFollowsTheFormat) {
  std::vector<Sample> samples = {
      {"z_first", DType::bf16, {3}, bytes_of<uint16_t>({1, 2, 3})},
      {"a_second", DType::f32, {1, 2}, bytes_of<float>({4.f, 5.f})},
  };
  write_safetensors(path("out.safetensors"), views_of(samples), {{"format", "pt"}});
  const std::string file = test::read_file(path("out.safetensors"));

  ASSERT_GE(file.size(), 8u);
  uint64_t header_length = 0;
  for (int i = 0; i < 8; ++i) header_length |= static_cast<uint64_t>(static_cast<unsigned char>(file[i])) << (8 * i);
  EXPECT_EQ((8 + header_length) % 8, 0u) << "the data start is 8-byte aligned";
  ASSERT_EQ(file.size(), 8 + header_length + 6 + 8);

  const std::string header_text = file.substr(8, header_length);
  EXPECT_LT(header_text.find("\"z_first\""), header_text.find("\"a_second\"")) << "written in the given order";
  const nlohmann::json header = nlohmann::json::parse(header_text);
  EXPECT_EQ(header["__metadata__"], nlohmann::json({{"format", "pt"}}));
  EXPECT_EQ(header["z_first"], nlohmann::json::parse(R"({"dtype":"BF16","shape":[3],"data_offsets":[0,6]})"));
  EXPECT_EQ(header["a_second"], nlohmann::json::parse(R"({"dtype":"F32","shape":[1,2],"data_offsets":[6,14]})"));
  EXPECT_EQ(file.substr(8 + header_length), samples[0].bytes + samples[1].bytes);
}

// ---- checkpoint layouts -----------------------------------------------------------------------

TEST_F(SafetensorsTest, OpensADirectoryHoldingModelSafetensors) {
  std::vector<Sample> samples = {{"model.norm.weight", DType::f32, {2}, bytes_of<float>({1.f, 2.f})}};
  write_safetensors(path("model.safetensors"), views_of(samples));

  const SafetensorsCheckpoint checkpoint(dir_.string());
  EXPECT_EQ(checkpoint.names(), std::vector<std::string>{"model.norm.weight"});
  ASSERT_NE(checkpoint.find("model.norm.weight"), nullptr);
  EXPECT_EQ(checkpoint.find("model.norm.weight")->file, path("model.safetensors"));
  EXPECT_EQ(checkpoint.find("absent"), nullptr);
  EXPECT_EQ(elements_of<float>(checkpoint.load("model.norm.weight", {2}, DType::f32)), (std::vector<float>{1.f, 2.f}));
}

TEST_F(SafetensorsTest, OpensAShardedCheckpointThroughItsIndex) {
  std::vector<Sample> first = {
      {"model.layers.0.mlp.up_proj.weight", DType::f32, {2, 2}, bytes_of<float>({1.f, 2.f, 3.f, 4.f})},
      {"model.embed_tokens.weight", DType::bf16, {2}, bytes_of<uint16_t>({0x3f80, 0x4000})},  // bf16 1, 2
  };
  std::vector<Sample> second = {{"lm_head.weight", DType::f32, {1, 2}, bytes_of<float>({-1.f, -2.f})}};
  write_safetensors(path("model-00001-of-00002.safetensors"), views_of(first));
  write_safetensors(path("model-00002-of-00002.safetensors"), views_of(second));
  test::write_file(path("model.safetensors.index.json"), R"({
    "metadata": {"total_size": 28},
    "weight_map": {
      "lm_head.weight": "model-00002-of-00002.safetensors",
      "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
      "model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors"
    }})");

  const SafetensorsCheckpoint checkpoint(dir_.string());
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight",
                                                          "model.layers.0.mlp.up_proj.weight"}));
  EXPECT_EQ(checkpoint.find("lm_head.weight")->file, path("model-00002-of-00002.safetensors"));
  EXPECT_EQ(checkpoint.find("model.embed_tokens.weight")->file, path("model-00001-of-00002.safetensors"));
  EXPECT_EQ(elements_of<float>(checkpoint.load("lm_head.weight", {1, 2}, DType::f32)), (std::vector<float>{-1.f, -2.f}));
  EXPECT_EQ(elements_of<float>(checkpoint.load("model.embed_tokens.weight", {2}, DType::f32)),
            (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(elements_of<float>(checkpoint.load("model.layers.0.mlp.up_proj.weight", {2, 2}, DType::f32)),
            (std::vector<float>{1.f, 2.f, 3.f, 4.f}));
}

// ---- atomic writes ----------------------------------------------------------------------------

TEST_F(SafetensorsTest, AtomicWriteLeavesNoTemporaryFile) {
  std::vector<Sample> old_samples = {{"w", DType::f32, {1}, bytes_of<float>({1.f})}};
  std::vector<Sample> new_samples = {{"w", DType::f32, {2}, bytes_of<float>({2.f, 3.f})}};
  write_safetensors(path("adapter.safetensors"), views_of(old_samples));
  write_safetensors(path("adapter.safetensors"), views_of(new_samples));  // replaces the old file

  EXPECT_FALSE(fs::exists(path("adapter.safetensors.tmp")));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
  EXPECT_EQ(elements_of<float>(SafetensorsCheckpoint(path("adapter.safetensors")).load("w", {2}, DType::f32)),
            (std::vector<float>{2.f, 3.f}));
}

TEST_F(SafetensorsTest, RejectedWriteKeepsTheOldFile) {
  std::vector<Sample> old_samples = {{"w", DType::f32, {1}, bytes_of<float>({1.f})}};
  write_safetensors(path("adapter.safetensors"), views_of(old_samples));
  const std::string old_bytes = test::read_file(path("adapter.safetensors"));

  std::vector<Sample> duplicated = {old_samples[0], old_samples[0]};
  const std::string error =
      test::error_of<Error>([&] { write_safetensors(path("adapter.safetensors"), views_of(duplicated)); });
  EXPECT_THAT(error, HasSubstr(path("adapter.safetensors")));
  EXPECT_THAT(error, HasSubstr("'w'"));
  EXPECT_EQ(test::read_file(path("adapter.safetensors")), old_bytes);
  EXPECT_FALSE(fs::exists(path("adapter.safetensors.tmp")));
}

TEST_F(SafetensorsTest, WriteRejectsBadTensorsNamingTheFile) {
  float value = 1.f;
  const View on_gpu{&value, DType::f32, {1}, Device::cuda};  // never read: rejected up front
  const View cpu_view{&value, DType::f32, {1}, Device::cpu};
  const std::string file = path("bad.safetensors");
  EXPECT_THAT(test::error_of<Error>([&] { write_safetensors(file, {{"gpu", on_gpu}}); }), HasSubstr(file));
  EXPECT_THAT(test::error_of<Error>([&] { write_safetensors(file, {{"__metadata__", cpu_view}}); }), HasSubstr(file));
  const std::string no_dir = path("missing_dir/out.safetensors");
  EXPECT_THAT(test::error_of<Error>([&] { write_safetensors(no_dir, {{"w", cpu_view}}); }), HasSubstr(no_dir));
  EXPECT_FALSE(fs::exists(file));
}

// ---- defensive reading ------------------------------------------------------------------------

TEST_F(SafetensorsTest, MissingFileIsAnError) {
  const std::string file = path("absent.safetensors");
  EXPECT_THAT(test::error_of<Error>([&] { SafetensorsFile{file}; }), HasSubstr(file));
  EXPECT_THAT(test::error_of<Error>([&] { SafetensorsCheckpoint{file}; }), HasSubstr(file));
}

TEST_F(SafetensorsTest, DirectoryWithoutCheckpointIsAnError) {
  const std::string error = test::error_of<Error>([&] { SafetensorsCheckpoint{dir_.string()}; });
  EXPECT_THAT(error, HasSubstr(dir_.string()));
  EXPECT_THAT(error, HasSubstr("model.safetensors.index.json"));
}

// Each malformed file must be refused with an fe::Error naming the file and what is wrong with it.
TEST_F(SafetensorsTest, MalformedFilesAreErrorsNamingTheFile) {
  const std::string tensor_data(16, '\0');
  struct Case {
    const char* file_name;
    std::string bytes;
    std::vector<const char*> message_parts;
  };
  const std::vector<Case> cases = {
      {"too_short.safetensors", "abc", {"too short"}},
      {"empty.safetensors", "", {"too short"}},
      {"length_beyond_file.safetensors", assemble("{}", "").replace(0, 2, "\xe8\x03"), {"header length 1000"}},
      {"not_json.safetensors", assemble("{not json", ""), {"not valid JSON"}},
      {"not_object.safetensors", assemble("[1, 2]", ""), {"not a JSON object"}},
      {"unknown_dtype.safetensors",
       assemble(R"({"w":{"dtype":"F8_E4M3","shape":[16],"data_offsets":[0,16]}})", tensor_data),
       {"'w'", "F8_E4M3", "F32, F64, BF16, F16, I32, I64"}},
      {"offsets_beyond_data.safetensors",
       assemble(R"({"w":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}})", tensor_data),
       {"'w'", "[0, 64]", "16-byte data section"}},
      {"offsets_reversed.safetensors",
       assemble(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", tensor_data),
       {"'w'", "[8, 4]"}},
      {"offsets_disagree_with_shape.safetensors",
       assemble(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", tensor_data),
       {"'w'", "12 bytes", "needs 16"}},
      {"rank_too_high.safetensors",
       assemble(R"({"w":{"dtype":"F32","shape":[1,1,1,1,1,1],"data_offsets":[0,4]}})", tensor_data),
       {"'w'", "rank 6"}},
      {"negative_dim.safetensors",
       assemble(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", tensor_data),
       {"'w'", "non-negative"}},
      {"huge_shape.safetensors",
       assemble(R"({"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]}})", tensor_data),
       {"'w'", "too large"}},
      {"missing_offsets.safetensors", assemble(R"({"w":{"dtype":"F32","shape":[1]}})", tensor_data),
       {"'w'", "data_offsets"}},
      {"metadata_not_strings.safetensors", assemble(R"({"__metadata__":{"step":3}})", ""), {"step"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file_name);
    const std::string file = path(c.file_name);
    test::write_file(file, c.bytes);
    const std::string error = test::error_of<Error>([&] { SafetensorsFile{file}; });
    EXPECT_THAT(error, HasSubstr(file));
    for (const char* part : c.message_parts) EXPECT_THAT(error, HasSubstr(part));
  }
}

TEST_F(SafetensorsTest, ZeroElementTensorsAreValid) {
  test::write_file(path("zero.safetensors"),
                   assemble(R"({"w":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})", ""));
  const SafetensorsCheckpoint checkpoint(path("zero.safetensors"));
  const Tensor loaded = checkpoint.load("w", {0, 3}, DType::bf16);
  EXPECT_EQ(loaded.numel(), 0);
  EXPECT_EQ(loaded.shape(), (Shape{0, 3}));
}

TEST_F(SafetensorsTest, MissingShardIsAnErrorNamingIt) {
  std::vector<Sample> first = {{"a", DType::f32, {1}, bytes_of<float>({1.f})}};
  write_safetensors(path("model-00001-of-00002.safetensors"), views_of(first));
  test::write_file(
      path("model.safetensors.index.json"),
      R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})");
  const std::string error = test::error_of<Error>([&] { SafetensorsCheckpoint{dir_.string()}; });
  EXPECT_THAT(error, HasSubstr(path("model-00002-of-00002.safetensors")));
  EXPECT_THAT(error, HasSubstr(path("model.safetensors.index.json")));
}

TEST_F(SafetensorsTest, MalformedIndexIsAnErrorNamingIt) {
  std::vector<Sample> first = {{"a", DType::f32, {1}, bytes_of<float>({1.f})}};
  write_safetensors(path("shard.safetensors"), views_of(first));
  const std::string index = path("model.safetensors.index.json");
  for (const char* text : {"{oops", R"({"metadata": {}})", R"({"weight_map": {"a": 1}})",
                           R"({"weight_map": {"absent_from_shard": "shard.safetensors"}})"}) {
    SCOPED_TRACE(text);
    test::write_file(index, text);
    EXPECT_THAT(test::error_of<Error>([&] { SafetensorsCheckpoint{dir_.string()}; }), HasSubstr(index));
  }
}

TEST_F(SafetensorsTest, MissingTensorIsAnErrorNamingItAndSuggestingCloseNames) {
  std::vector<Sample> samples = {
      {"model.layers.0.mlp.up_proj.weight", DType::f32, {1}, bytes_of<float>({1.f})},
      {"model.norm.weight", DType::f32, {1}, bytes_of<float>({1.f})},
  };
  write_safetensors(path("model.safetensors"), views_of(samples));
  const SafetensorsCheckpoint checkpoint(dir_.string());
  const std::string error =
      test::error_of<Error>([&] { checkpoint.load("layers.0.mlp.up_proj.weight", {1}, DType::f32); });
  EXPECT_THAT(error, HasSubstr(dir_.string()));
  EXPECT_THAT(error, HasSubstr("'layers.0.mlp.up_proj.weight'"));
  EXPECT_THAT(error, HasSubstr("closest: 'model.layers.0.mlp.up_proj.weight'"));
}

TEST_F(SafetensorsTest, ShapeMismatchIsAnErrorNamingBothShapes) {
  std::vector<Sample> samples = {{"w", DType::f32, {2, 3}, std::string(24, '\0')}};
  write_safetensors(path("model.safetensors"), views_of(samples));
  const SafetensorsCheckpoint checkpoint(dir_.string());
  const std::string error = test::error_of<Error>([&] { checkpoint.load("w", {3, 2}, DType::f32); });
  EXPECT_THAT(error, HasSubstr(dir_.string()));
  EXPECT_THAT(error, HasSubstr("'w'"));
  EXPECT_THAT(error, HasSubstr("[2, 3]"));
  EXPECT_THAT(error, HasSubstr("[3, 2]"));
}

TEST_F(SafetensorsTest, LoadingIntegersAsFloatsIsAnError) {
  std::vector<Sample> samples = {{"ids", DType::i32, {2}, bytes_of<int32_t>({1, 2})}};
  write_safetensors(path("ids.safetensors"), views_of(samples));
  const std::string error =
      test::error_of<Error>([&] { SafetensorsCheckpoint(path("ids.safetensors")).load("ids", {2}, DType::f32); });
  EXPECT_THAT(error, HasSubstr(path("ids.safetensors")));
  EXPECT_THAT(error, HasSubstr("'ids'"));
}

}  // namespace
}  // namespace fe
