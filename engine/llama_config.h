// engine/llama_config.h — the model shape, read from (and written as) HF's config.json.
//
// Three architectures of the Llama family share one decoder (RMSNorm, RoPE, GQA attention, SwiGLU),
// told apart by HF's model_type:
//   llama    biases per attention_bias (q, k, v and o) and mlp_bias;
//   mistral  no biases; `sliding_window` W (null: full attention; absent: 4096, MistralConfig's
//            default) on every layer;
//   qwen2    biases on q, k and v only; a sliding window only with use_sliding_window, on the
//            layers that layer_types marks "sliding_attention" (default: those at or above
//            max_window_layers).
// In a sliding layer a query attends to the W most recent keys, itself included (HF masking_utils:
// key j is visible to query i iff i − W < j ≤ i). RoPE comes from rope_theta and rope_scaling, or
// from rope_parameters (transformers 5 writes both there). Anything we would silently compute
// wrong — another architecture or activation, an unknown rope type — is an error that names the
// file and the key.
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

enum class ModelType { llama, mistral, qwen2 };
const char* model_type_name(ModelType type);  // HF's model_type: "llama", "mistral", "qwen2"

struct LlamaConfig {
  ModelType model_type = ModelType::llama;
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
  bool attention_bias = false;  // llama only (mistral has no biases, qwen2 always q, k, v)
  bool mlp_bias = false;        // llama only
  // Sliding-window attention: W > 0 keys per query in the sliding layers; 0 = full attention.
  int64_t sliding_window = 0;
  // Per layer, whether it slides (HF layer_types "sliding_attention"); empty: every layer does.
  std::vector<bool> sliding_layers;
  double initializer_range = 0.02;
  int64_t bos_token_id = 1;
  std::vector<int64_t> eos_token_ids = {2};  // HF's eos_token_id: one id or a list (Llama 3.1)

  // `source` names the file in error messages.
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& source);
  // A config.json file, or a directory that holds one.
  static LlamaConfig load(const std::string& path);
  nlohmann::json to_json() const;

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  // The attention window of a layer for kernels/attention.h: W or 0 (full causal attention).
  int64_t attention_window(int64_t layer) const;
  // Which projections carry a bias under this architecture.
  bool has_qkv_bias() const;
  bool has_o_bias() const;
  bool has_mlp_bias() const;
  // RoPE inverse frequencies (hd/2 of them) after rope_scaling, in double precision.
  std::vector<double> rope_inv_freq() const;
  int64_t num_parameters() const;
};

}  // namespace fe
