// config.json parsing: HF's real files are accepted, bad ones are refused with the key named, and
// RoPE frequencies follow HF's formulas (checked against values worked out by hand here).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

#include "engine/llama_config.h"
#include "kernels/view.h"

namespace fe {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// TinyLlama-1.1B's config.json as published (an unmodified HF file).
const char* kTinyLlama = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 5632,
  "max_position_embeddings": 2048, "model_type": "llama", "num_attention_heads": 32,
  "num_hidden_layers": 22, "num_key_value_heads": 4, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": null, "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.35.0", "use_cache": true, "vocab_size": 32000})";

TEST(LlamaConfig, ReadsAnHfConfig) {
  const LlamaConfig c = LlamaConfig::from_json(json::parse(kTinyLlama), "config.json");
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::none);
  EXPECT_EQ(c.num_parameters(), 1100048384);  // TinyLlama's published parameter count
  const LlamaConfig again = LlamaConfig::from_json(c.to_json(), "round trip");
  EXPECT_EQ(again.to_json(), c.to_json());
}

std::string error_for(const std::function<void(json&)>& edit) {
  json j = json::parse(kTinyLlama);
  edit(j);
  try {
    LlamaConfig::from_json(j, "models/x/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(LlamaConfig, RefusesBadConfigsNamingFileAndKey) {
  EXPECT_THAT(error_for([](json& j) { j.erase("hidden_size"); }),
              AllOf(HasSubstr("models/x/config.json"), HasSubstr("\"hidden_size\"")));
  EXPECT_THAT(error_for([](json& j) { j["num_hidden_layers"] = "22"; }),
              AllOf(HasSubstr("\"num_hidden_layers\""), HasSubstr("integer")));
  EXPECT_THAT(error_for([](json& j) { j["model_type"] = "gpt2"; }), HasSubstr("unsupported architecture"));
  EXPECT_THAT(error_for([](json& j) { j["hidden_act"] = "gelu"; }), HasSubstr("hidden_act"));
  EXPECT_THAT(error_for([](json& j) { j["num_key_value_heads"] = 5; }), HasSubstr("multiple of num_key_value_heads"));
  EXPECT_THAT(error_for([](json& j) { j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}}; }),
              HasSubstr("\"yarn\" is not supported"));
  EXPECT_THAT(error_for([](json& j) { j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}}; }),
              HasSubstr("low_freq_factor"));
  EXPECT_THAT(error_for([](json& j) { j["head_dim"] = 63; }), HasSubstr("even"));
  EXPECT_THAT(error_for([](json& j) { j["vocab_size"] = 0; }), HasSubstr("\"vocab_size\" must be positive"));
}

TEST(LlamaConfig, RopeFrequenciesFollowHf) {
  LlamaConfig c = LlamaConfig::from_json(json::parse(kTinyLlama), "config.json");
  c.head_dim = 8;
  c.rope_theta = 10000;
  // Default: 1/theta^(2i/hd) = 1, 0.1, 0.01, 0.001.
  std::vector<double> expected = {1.0, 0.1, 0.01, 0.001};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(c.rope_inv_freq()[i], expected[i], 1e-15);
  c.rope_scaling = {RopeScaling::Type::linear, 4.0};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(c.rope_inv_freq()[i], expected[i] / 4, 1e-15);
  // llama3 with factor 8, low 1, high 4, original context 100: wavelengths 2π/f are 6.28, 62.8,
  // 628, 6283. Below 100/4 = 25 unchanged; above 100/1 = 100 divided by 8; between, smoothed
  // with s = (100/wavelen − 1)/(4 − 1).
  c.rope_scaling = {RopeScaling::Type::llama3, 8.0, 1.0, 4.0, 100};
  const double wavelen = 2 * std::numbers::pi / 0.1, s = (100 / wavelen - 1) / 3;
  EXPECT_NEAR(c.rope_inv_freq()[0], 1.0, 1e-15);
  EXPECT_NEAR(c.rope_inv_freq()[1], (1 - s) * 0.1 / 8 + s * 0.1, 1e-15);
  EXPECT_NEAR(c.rope_inv_freq()[2], 0.01 / 8, 1e-15);
  EXPECT_NEAR(c.rope_inv_freq()[3], 0.001 / 8, 1e-15);
}

}  // namespace
}  // namespace fe
