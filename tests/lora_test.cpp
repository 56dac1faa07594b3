// LoRA adapters: PEFT files round-trip exactly, bad adapter files are refused by name, and merging
// an adapter into the base weights gives the same model.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/llama_model.h"
#include "engine/safetensors.h"
#include "tests/test_files.h"
#include "tests/test_util.h"
#include "tests/training_util.h"

namespace fe {
namespace {

using test::relative_error;
using ::testing::AllOf;
using ::testing::HasSubstr;

LlamaConfig small_config() {
  return test::tiny_llama({.hidden = 24, .intermediate = 40, .layers = 2, .head_dim = 6, .vocab = 30, .init = 0.3});
}

LoraAdapter trained_looking_adapter(const LlamaConfig& c, DType dtype) {
  LoraConfig lc;
  lc.rank = 3;
  lc.alpha = 5;
  lc.use_rslora = true;
  lc.targets = {Proj::q, Proj::o, Proj::up, Proj::down};
  LoraAdapter lora = LoraAdapter::init(c, lc, 1, dtype);
  Rng rng(2);
  for (auto& [name, t] : lora.named_tensors())
    if (name.find("lora_B") != std::string::npos) rng.fill_normal(t, 0.0, 0.2);
  return lora;
}

Tensor some_ids() {
  Tensor ids = Tensor::empty(Shape{2, 5}, DType::i32);
  for (int i = 0; i < 10; ++i) ids.as<int32_t>()[i] = (i * 7 + 3) % 30;
  return ids;
}

TEST(Lora, PeftRoundTripGivesIdenticalOutputs) {
  test::TempDir dir;
  const LlamaConfig c = small_config();
  const LlamaModel model(LlamaWeights::random(c, 3, DType::f32));
  const LoraAdapter lora = trained_looking_adapter(c, DType::f32);
  lora.save_peft(dir.path("adapter"), "my/base");
  const LoraAdapter loaded = LoraAdapter::load_peft(dir.path("adapter"), c, DType::f32);
  EXPECT_EQ(loaded.config.rank, 3);
  EXPECT_TRUE(loaded.config.use_rslora);
  EXPECT_EQ(loaded.config.targets, lora.config.targets);
  const Tensor a = model.logits(some_ids(), &lora), b = model.logits(some_ids(), &loaded);
  EXPECT_EQ(relative_error(a, b), 0.0);

  std::ifstream in(dir.path("adapter/adapter_config.json"));
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["base_model_name_or_path"], "my/base");  // not a directory here: a hub id, kept as given
  EXPECT_EQ(j["target_modules"], nlohmann::json({"q_proj", "o_proj", "up_proj", "down_proj"}));
  const SafetensorsFile file(dir.path("adapter/adapter_model.safetensors"));
  EXPECT_NE(file.find("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"), nullptr);
  EXPECT_EQ(file.tensors().size(), 2u * 4 * 2);
}

TEST(Lora, ALocalBaseModelIsRecordedByItsAbsolutePath) {
  test::TempDir dir;
  const LlamaConfig c = small_config();
  std::filesystem::create_directories(dir.path("models/base"));
  const std::filesystem::path previous = std::filesystem::current_path();
  std::filesystem::current_path(dir.path("models"));
  test::lora_on_every_projection(c, DType::f32).save_peft(dir.path("adapter"), "./base/");
  std::filesystem::current_path(previous);

  std::ifstream in(dir.path("adapter/adapter_config.json"));
  const std::filesystem::path recorded = nlohmann::json::parse(in)["base_model_name_or_path"].get<std::string>();
  EXPECT_TRUE(recorded.is_absolute()) << recorded;
  EXPECT_TRUE(std::filesystem::equivalent(recorded, dir.path("models/base"))) << recorded;
  EXPECT_EQ(recorded.filename(), "base") << recorded;
}

TEST(Lora, BadAdapterFilesAreRefusedByName) {
  test::TempDir dir;
  const LlamaConfig c = small_config();
  trained_looking_adapter(c, DType::f32).save_peft(dir.path("adapter"));
  LlamaConfig other = c;
  other.num_hidden_layers = 3;  // the adapter lacks layer 2
  try {
    LoraAdapter::load_peft(dir.path("adapter"), other, DType::f32);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("layers.2.self_attn.q_proj.lora_A.weight"));
  }
  LlamaConfig fewer = c;
  fewer.num_hidden_layers = 1;  // the adapter has an extra layer
  try {
    LoraAdapter::load_peft(dir.path("adapter"), fewer, DType::f32);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("unexpected tensor"));
  }
  std::ofstream(dir.path("adapter/adapter_config.json")) << R"({"r": 3, "lora_alpha": 5, "target_modules": ["q_proj", "lm_head"]})";
  try {
    LoraAdapter::load_peft(dir.path("adapter"), c, DType::f32);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("adapter_config.json"), HasSubstr("\"lm_head\"")));
  }
}

// Adapters PEFT can write that fedengine cannot use are refused with what is wrong and what to do,
// not with a missing tensor or file further on.
TEST(Lora, AdaptersOfSomeLayersAndPickledAdaptersAreRefusedWithTheReason) {
  test::TempDir dir;
  const LlamaConfig c = small_config();
  trained_looking_adapter(c, DType::f32).save_peft(dir.path("adapter"));
  const std::string config_file = dir.path("adapter/adapter_config.json");
  nlohmann::json config = nlohmann::json::parse(test::read_file(config_file));
  config["layers_to_transform"] = nullptr;  // as PEFT writes it for every layer
  test::write_file(config_file, config.dump());
  EXPECT_NO_THROW(LoraAdapter::load_peft(dir.path("adapter"), c, DType::f32));
  for (const nlohmann::json& layers : {nlohmann::json({1}), nlohmann::json(0)}) {
    config["layers_to_transform"] = layers;
    test::write_file(config_file, config.dump());
    EXPECT_THAT(test::error_of<Error>([&] { LoraAdapter::load_peft(dir.path("adapter"), c, DType::f32); }),
                AllOf(HasSubstr("adapter_config.json"), HasSubstr("\"layers_to_transform\" is not supported"),
                      HasSubstr("every layer")));
  }
  config.erase("layers_to_transform");
  test::write_file(config_file, config.dump());

  std::filesystem::rename(dir.path("adapter/adapter_model.safetensors"), dir.path("adapter/adapter_model.bin"));
  const std::string error = test::error_of<Error>([&] { LoraAdapter::load_peft(dir.path("adapter"), c, DType::f32); });
  EXPECT_THAT(error, AllOf(HasSubstr("adapter/adapter_model.bin"), HasSubstr("reads only adapter_model.safetensors"),
                           HasSubstr("st.save_file(torch.load(")));
  EXPECT_EQ(test::error_of<Error>([&] { peft_weights_file(dir.path("adapter")); }), error);
}

// The parameters of an adapter are its A and B matrices: r·(in + out) per targeted projection.
TEST(Lora, NumParametersCountsEveryAAndB) {
  const LlamaConfig c = small_config();
  const int64_t r = 3, hidden = c.hidden_size, attention = c.num_attention_heads * c.head_dim;
  const int64_t per_layer = r * (hidden + attention)               // q_proj: hidden → heads·head_dim
                            + r * (attention + hidden)             // o_proj
                            + r * (hidden + c.intermediate_size)   // up_proj
                            + r * (c.intermediate_size + hidden);  // down_proj
  EXPECT_EQ(trained_looking_adapter(c, DType::f32).num_parameters(), c.num_hidden_layers * per_layer);
  EXPECT_EQ(LoraAdapter{}.num_parameters(), 0);
}

TEST(Lora, MergedWeightsEqualBasePlusAdapter) {
  const LlamaConfig c = small_config();
  const LlamaWeights base = LlamaWeights::random(c, 4, DType::f64);
  const LoraAdapter lora = trained_looking_adapter(c, DType::f64);
  const Tensor q_before = base.layers[0][Proj::q].weight.clone();
  const LlamaWeights merged = merge_lora(base, lora);
  EXPECT_EQ(relative_error(base.layers[0][Proj::q].weight, q_before), 0.0);  // the base is untouched
  const Tensor with_adapter = LlamaModel(base).logits(some_ids(), &lora);
  const Tensor folded = LlamaModel(merged).logits(some_ids(), nullptr);
  EXPECT_LT(relative_error(folded, with_adapter), 1e-13);
  EXPECT_GT(relative_error(LlamaModel(base).logits(some_ids(), nullptr), with_adapter), 1e-3);
}

}  // namespace
}  // namespace fe
