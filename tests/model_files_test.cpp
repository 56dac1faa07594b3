// What travels with a checkpoint besides its weights (engine/model_files.h) and when its answers end
// (engine/generation_config.h).
#include "engine/model_files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "engine/generation_config.h"
#include "tests/test_util.h"

namespace fe {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

void write(const std::string& path, const std::string& contents) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << contents;
}

// A stand-in tokenizer whose EOS is given.
class FixedEos final : public Tokenizer {
 public:
  explicit FixedEos(int32_t eos) : Tokenizer("") { set_special_tokens({.eos_id = eos}); }
  std::vector<int32_t> encode(std::string_view) const override { return {}; }
  int64_t vocab_size() const override { return 100; }
  std::optional<int32_t> token_to_id(std::string_view) const override { return std::nullopt; }

 protected:
  std::string piece_of(int32_t) const override { return ""; }
  std::string decode_ids(std::span<const int32_t>, bool) const override { return ""; }
};

TEST(StopIds, GenerationConfigListsElseTheModelConfigsAndTheTokenizersEosEachOnce) {
  test::TempDir dir;
  const FixedEos eos(7);
  LlamaConfig config;
  config.eos_token_ids = {5, 6};
  // Without generation_config.json transformers falls back to config.json's eos_token_id.
  EXPECT_THAT(stop_ids(dir.path(), config, &eos), ElementsAre(5, 6, 7));
  EXPECT_THAT(stop_ids(dir.path(), config, nullptr), ElementsAre(5, 6));
  write(dir.path("generation_config.json"), R"({"eos_token_id": [128001, 128008, 7]})");
  EXPECT_THAT(stop_ids(dir.path(), config, &eos), ElementsAre(128001, 128008, 7));
  write(dir.path("generation_config.json"), R"({"bos_token_id": 1})");
  EXPECT_THAT(stop_ids(dir.path(), config, &eos), ElementsAre(5, 6, 7));
  write(dir.path("generation_config.json"), R"({"eos_token_id": null})");  // said: none
  EXPECT_THAT(stop_ids(dir.path(), config, nullptr), ElementsAre());
}

TEST(StopIds, MalformedFilesNameTheFileAndKey) {
  test::TempDir dir;
  const auto error_of = [&](const std::string& contents) {
    write(dir.path("generation_config.json"), contents);
    try {
      stop_ids(dir.path(), LlamaConfig{}, nullptr);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error_of(R"({"eos_token_id": "</s>"})"),
              AllOf(HasSubstr("generation_config.json"), HasSubstr("eos_token_id"), HasSubstr("\"</s>\"")));
  EXPECT_THAT(error_of(R"({"eos_token_id": [1, "x"]})"), HasSubstr("eos_token_id"));
  EXPECT_THAT(error_of("not json"), AllOf(HasSubstr("generation_config.json"), HasSubstr("not a JSON object")));
}

TEST(ModelCompanionFiles, TokenizerItsConfigAndTheGenerationConfigTravel) {
  test::TempDir dir;
  write(dir.path("base/tokenizer.json"), "{}");
  write(dir.path("base/tokenizer_config.json"), R"({"chat_template": "x"})");
  write(dir.path("base/special_tokens_map.json"), "{}");
  write(dir.path("base/generation_config.json"), R"({"eos_token_id": 2})");
  write(dir.path("base/unrelated.txt"), "");
  fs::create_directories(dir.path("out"));
  copy_model_companion_files(dir.path("base"), dir.path("base"), dir.path("out"));
  for (const char* name :
       {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"})
    EXPECT_TRUE(fs::exists(dir.path("out/") + name)) << name;
  EXPECT_FALSE(fs::exists(dir.path("out/unrelated.txt")));

  // A tokenizer named by file elsewhere arrives under the name Tokenizer::load looks for.
  write(dir.path("tokenizers/sp.model"), "protobuf");
  fs::create_directories(dir.path("out2"));
  copy_model_companion_files(dir.path("base"), dir.path("tokenizers/sp.model"), dir.path("out2"));
  EXPECT_TRUE(fs::exists(dir.path("out2/tokenizer.model")));
  EXPECT_TRUE(fs::exists(dir.path("out2/generation_config.json")));

  fs::create_directories(dir.path("out3"));
  copy_model_companion_files(dir.path("tokenizers"), "", dir.path("out3"));
  EXPECT_TRUE(fs::is_empty(dir.path("out3")));
}

}  // namespace
}  // namespace fe
