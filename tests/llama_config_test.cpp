// config.json parsing: HF's real files (Llama, Mistral, Qwen2) are accepted with each
// architecture's biases and attention windows, bad ones are refused with the file and key named,
// written configs read back as the same architecture, and RoPE frequencies follow HF's formulas
// (checked against values worked out by hand here).
#include "engine/llama_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <numbers>
#include <string>
#include <vector>

#include "core/error.h"

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
  EXPECT_THAT(error_for([](json& j) { j["model_type"] = "gpt2"; }),
              AllOf(HasSubstr("models/x/config.json"), HasSubstr("unsupported architecture"), HasSubstr("\"gpt2\""),
                    HasSubstr("supported: llama, mistral, qwen2")));
  EXPECT_THAT(error_for([](json& j) { j["model_type"] = 7; }), HasSubstr("\"model_type\" should be a string"));
  EXPECT_THAT(error_for([](json& j) { j["hidden_act"] = "gelu"; }),
              AllOf(HasSubstr("models/x/config.json"), HasSubstr("hidden_act \"gelu\""), HasSubstr("supported: silu")));
  EXPECT_THAT(error_for([](json& j) { j["num_key_value_heads"] = 5; }), HasSubstr("multiple of num_key_value_heads"));
  EXPECT_THAT(error_for([](json& j) { j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}}; }),
              HasSubstr("\"yarn\" is not supported"));
  EXPECT_THAT(error_for([](json& j) { j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}}; }),
              HasSubstr("low_freq_factor"));
  EXPECT_THAT(error_for([](json& j) { j["head_dim"] = 63; }), HasSubstr("even"));
  EXPECT_THAT(error_for([](json& j) { j["vocab_size"] = 0; }), HasSubstr("\"vocab_size\" must be positive"));
}

// Mistral-7B-v0.1's config.json as published.
const char* kMistral7B = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
  "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0", "use_cache": true, "vocab_size": 32000})";

// Qwen2.5-0.5B-Instruct's config.json as published.
const char* kQwen25 = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
  "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
  "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 14,
  "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.43.1",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

LlamaConfig parse(const char* text, const std::function<void(json&)>& edit = {}) {
  json j = json::parse(text);
  if (edit) edit(j);
  return LlamaConfig::from_json(j, "models/x/config.json");
}

std::string parse_error(const char* text, const std::function<void(json&)>& edit) {
  try {
    parse(text, edit);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// to_json, then from_json, gives the same config (and so the same JSON).
void expect_round_trip(const LlamaConfig& c) {
  const LlamaConfig again = LlamaConfig::from_json(c.to_json(), "round trip");
  EXPECT_EQ(again.to_json(), c.to_json());
  EXPECT_EQ(again.model_type, c.model_type);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) EXPECT_EQ(again.attention_window(l), c.attention_window(l)) << l;
  EXPECT_EQ(again.num_parameters(), c.num_parameters());
}

TEST(LlamaConfig, LlamaHasNoWindowAndBiasesPerAttentionBias) {
  const LlamaConfig c = parse(kTinyLlama, [](json& j) { j["sliding_window"] = 16; });  // LlamaConfig ignores it
  EXPECT_EQ(c.model_type, ModelType::llama);
  EXPECT_EQ(c.attention_window(0), 0);
  EXPECT_FALSE(c.has_qkv_bias() || c.has_o_bias() || c.has_mlp_bias());
  const LlamaConfig biased = parse(kTinyLlama, [](json& j) { j["attention_bias"] = j["mlp_bias"] = true; });
  EXPECT_TRUE(biased.has_qkv_bias() && biased.has_o_bias() && biased.has_mlp_bias());
  expect_round_trip(biased);
  EXPECT_EQ(parse(kTinyLlama, [](json& j) { j.erase("model_type"); }).model_type, ModelType::llama);
}

TEST(LlamaConfig, ReadsMistralWithItsSlidingWindow) {
  const LlamaConfig c = parse(kMistral7B);
  EXPECT_EQ(c.model_type, ModelType::mistral);
  EXPECT_EQ(c.sliding_window, 4096);
  for (int64_t l : {0, 31}) EXPECT_EQ(c.attention_window(l), 4096);
  EXPECT_EQ(c.head_dim, 128);  // hidden / heads when head_dim is absent
  EXPECT_FALSE(c.has_qkv_bias() || c.has_o_bias() || c.has_mlp_bias());
  EXPECT_EQ(c.num_parameters(), 7241732096);  // Mistral-7B-v0.1's published parameter count
  EXPECT_EQ(c.to_json()["architectures"], json::array({"MistralForCausalLM"}));
  EXPECT_EQ(c.to_json()["sliding_window"], 4096);
  expect_round_trip(c);

  // null: full attention (Mistral-7B-v0.2 and later); absent: MistralConfig's default 4096.
  const LlamaConfig full = parse(kMistral7B, [](json& j) { j["sliding_window"] = nullptr; });
  EXPECT_EQ(full.attention_window(0), 0);
  EXPECT_TRUE(full.to_json()["sliding_window"].is_null());
  expect_round_trip(full);
  EXPECT_EQ(parse(kMistral7B, [](json& j) { j.erase("sliding_window"); }).attention_window(3), 4096);
  // MistralAttention has no biases whatever attention_bias says.
  EXPECT_FALSE(parse(kMistral7B, [](json& j) { j["attention_bias"] = true; }).has_qkv_bias());
  EXPECT_THAT(parse_error(kMistral7B, [](json& j) { j["sliding_window"] = 0; }),
              AllOf(HasSubstr("models/x/config.json"), HasSubstr("\"sliding_window\""), HasSubstr("or null")));
  EXPECT_THAT(parse_error(kMistral7B, [](json& j) { j["sliding_window"] = "4096"; }), HasSubstr("\"sliding_window\""));
}

TEST(LlamaConfig, ReadsQwen2WithQkvBiasesAndWindowsOnlyWhenEnabled) {
  const LlamaConfig c = parse(kQwen25);
  EXPECT_EQ(c.model_type, ModelType::qwen2);
  EXPECT_TRUE(c.has_qkv_bias());
  EXPECT_FALSE(c.has_o_bias() || c.has_mlp_bias());
  for (int64_t l = 0; l < 24; ++l) EXPECT_EQ(c.attention_window(l), 0);  // use_sliding_window false
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.num_parameters(), 494032768);  // Qwen2.5-0.5B's published parameter count
  EXPECT_EQ(c.to_json()["use_sliding_window"], false);
  EXPECT_EQ(c.to_json()["architectures"], json::array({"Qwen2ForCausalLM"}));
  expect_round_trip(c);

  // Enabled: the layers at or above max_window_layers slide (Qwen2Config's default layer_types).
  const LlamaConfig sliding = parse(kQwen25, [](json& j) {
    j["use_sliding_window"] = true;
    j["sliding_window"] = 5;
  });
  for (int64_t l = 0; l < 24; ++l) EXPECT_EQ(sliding.attention_window(l), l >= 21 ? 5 : 0) << l;
  expect_round_trip(sliding);
  EXPECT_EQ(sliding.to_json()["max_window_layers"], 21);
  // An explicit layer_types decides per layer.
  const LlamaConfig typed = parse(kQwen25, [](json& j) {
    j["use_sliding_window"] = true;
    j["sliding_window"] = 7;
    j["layer_types"] = json::array();
    for (int l = 0; l < 24; ++l) j["layer_types"].push_back(l % 2 ? "sliding_attention" : "full_attention");
  });
  for (int64_t l = 0; l < 24; ++l) EXPECT_EQ(typed.attention_window(l), l % 2 ? 7 : 0) << l;
  expect_round_trip(typed);

  EXPECT_THAT(parse_error(kQwen25,
                          [](json& j) {
                            j["layer_types"] = {"full_attention", "sliding_attention"};
                          }),
              AllOf(HasSubstr("models/x/config.json"), HasSubstr("\"layer_types\""), HasSubstr("24 entries")));
  EXPECT_THAT(parse_error(kQwen25,
                          [](json& j) {
                            j["use_sliding_window"] = true;
                            j["layer_types"] = json::array();
                            for (int l = 0; l < 24; ++l) j["layer_types"].push_back(l ? "full_attention" : "chunked");
                          }),
              HasSubstr("layer_types[0] is \"chunked\""));
  EXPECT_THAT(parse_error(kQwen25,
                          [](json& j) {
                            j["layer_types"] = json::array();
                            for (int l = 0; l < 24; ++l) j["layer_types"].push_back("sliding_attention");
                          }),
              AllOf(HasSubstr("use_sliding_window is false"), HasSubstr("set use_sliding_window true")));
}

TEST(LlamaConfig, ReadsEosListsAndTransformers5RopeParameters) {
  const LlamaConfig llama31 = parse(kTinyLlama, [](json& j) { j["eos_token_id"] = {128001, 128008, 128009}; });
  EXPECT_EQ(llama31.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  expect_round_trip(llama31);
  EXPECT_THAT(parse_error(kTinyLlama, [](json& j) { j["eos_token_id"] = {1, "2"}; }), HasSubstr("\"eos_token_id\""));

  const LlamaConfig v5 = parse(kQwen25, [](json& j) {
    j.erase("rope_theta");
    j["rope_parameters"] = {{"rope_theta", 1e6}, {"rope_type", "default"}};
  });
  EXPECT_EQ(v5.rope_theta, 1e6);
  EXPECT_EQ(v5.rope_scaling.type, RopeScaling::Type::none);
  const LlamaConfig scaled = parse(kTinyLlama, [](json& j) {
    j["rope_parameters"] = {{"rope_theta", 5e5},       {"rope_type", "llama3"},
                            {"factor", 8.0},           {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  });
  EXPECT_EQ(scaled.rope_theta, 5e5);
  EXPECT_EQ(scaled.rope_scaling.type, RopeScaling::Type::llama3);
  expect_round_trip(scaled);
  EXPECT_THAT(parse_error(kTinyLlama,
                          [](json& j) {
                            j["rope_parameters"] = {{"rope_theta", 1e4}};
                            j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
                          }),
              HasSubstr("both \"rope_scaling\" and \"rope_parameters\""));
  EXPECT_THAT(parse_error(kTinyLlama,
                          [](json& j) {
                            j["rope_parameters"] = {{"full_attention", {{"rope_theta", 1e6}}},
                                                    {"sliding_attention", {{"rope_theta", 1e4}}}};
                          }),
              HasSubstr("per layer type is not supported"));
  EXPECT_THAT(parse_error(kTinyLlama,
                          [](json& j) {
                            j["rope_parameters"] = {{"rope_theta", 1e4}, {"partial_rotary_factor", 0.5}};
                          }),
              HasSubstr("partial_rotary_factor"));
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
