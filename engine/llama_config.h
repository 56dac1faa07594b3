// engine/llama_config.h — the model shape, read from (and written as) HF's config.json.
//
// Only Llama-architecture models are accepted (model_type "llama", hidden_act "silu"); anything we
// would silently compute wrong — another architecture, an unknown rope_scaling type — is an error
// that names the file and the key.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace fe {

struct RopeScaling {
  enum class Type { none, linear, llama3 };
  Type type = Type::none;
  double factor = 1.0;
  double low_freq_factor = 1.0;     // llama3
  double high_freq_factor = 4.0;    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct LlamaConfig {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  double initializer_range = 0.02;
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;

  // `source` names the file in error messages.
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& source);
  // A config.json file, or a directory that holds one.
  static LlamaConfig load(const std::string& path);
  nlohmann::json to_json() const;

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  // RoPE inverse frequencies (hd/2 of them) after rope_scaling, in double precision.
  std::vector<double> rope_inv_freq() const;
  int64_t num_parameters() const;
};

}  // namespace fe
