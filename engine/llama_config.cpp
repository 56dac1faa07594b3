#include "engine/llama_config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>

#include "kernels/view.h"

namespace fe {
namespace {

using nlohmann::json;

[[noreturn]] void config_error(const std::string& source, const std::string& what) {
  throw Error(source + ": " + what);
}

// Reads key into out when present (required keys must be present); a wrong type is an error
// that names the key and the expected type.
template <class T>
void read_key(const json& j, const char* key, T& out, const std::string& source, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) config_error(source, std::string("missing required key \"") + key + "\"");
    return;
  }
  const bool ok = std::is_same_v<T, bool> ? it->is_boolean()
                  : std::is_integral_v<T> ? it->is_number_integer()
                                          : it->is_number();
  if (!ok)
    config_error(source, std::string("key \"") + key + "\" should be " +
                             (std::is_same_v<T, bool> ? "a boolean" : std::is_integral_v<T> ? "an integer" : "a number") +
                             ", got " + it->dump());
  out = it->get<T>();
}

void require_positive(int64_t value, const char* key, const std::string& source) {
  if (value <= 0) config_error(source, std::string("\"") + key + "\" must be positive, got " + std::to_string(value));
}

RopeScaling parse_rope_scaling(const json& j, const std::string& source) {
  RopeScaling s;
  if (j.is_null()) return s;
  if (!j.is_object()) config_error(source, "\"rope_scaling\" should be an object or null");
  std::string type = j.value("rope_type", j.value("type", std::string("default")));
  if (type == "default") return s;
  if (type == "linear") {
    s.type = RopeScaling::Type::linear;
  } else if (type == "llama3") {
    s.type = RopeScaling::Type::llama3;
    read_key(j, "low_freq_factor", s.low_freq_factor, source, true);
    read_key(j, "high_freq_factor", s.high_freq_factor, source, true);
    read_key(j, "original_max_position_embeddings", s.original_max_position_embeddings, source, true);
    if (s.high_freq_factor <= s.low_freq_factor)
      config_error(source, "rope_scaling needs high_freq_factor > low_freq_factor");
  } else {
    config_error(source, "rope_scaling type \"" + type + "\" is not supported (supported: default, linear, llama3)");
  }
  read_key(j, "factor", s.factor, source, true);
  if (s.factor <= 0) config_error(source, "rope_scaling.factor must be positive");
  return s;
}

json rope_scaling_json(const RopeScaling& s) {
  switch (s.type) {
    case RopeScaling::Type::none: return nullptr;
    case RopeScaling::Type::linear: return {{"rope_type", "linear"}, {"factor", s.factor}};
    case RopeScaling::Type::llama3:
      return {{"rope_type", "llama3"},
              {"factor", s.factor},
              {"low_freq_factor", s.low_freq_factor},
              {"high_freq_factor", s.high_freq_factor},
              {"original_max_position_embeddings", s.original_max_position_embeddings}};
  }
  return nullptr;
}

}  // namespace

LlamaConfig LlamaConfig::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) config_error(source, "expected a JSON object");
  const std::string model_type = j.value("model_type", std::string("llama"));
  if (model_type != "llama")
    config_error(source, "unsupported architecture: model_type \"" + model_type + "\" (supported: llama)");
  const std::string act = j.value("hidden_act", std::string("silu"));
  if (act != "silu") config_error(source, "unsupported hidden_act \"" + act + "\" (Llama uses silu)");

  LlamaConfig c;
  read_key(j, "hidden_size", c.hidden_size, source, true);
  read_key(j, "intermediate_size", c.intermediate_size, source, true);
  read_key(j, "num_hidden_layers", c.num_hidden_layers, source, true);
  read_key(j, "num_attention_heads", c.num_attention_heads, source, true);
  read_key(j, "vocab_size", c.vocab_size, source, true);
  c.num_key_value_heads = c.num_attention_heads;
  read_key(j, "num_key_value_heads", c.num_key_value_heads, source, false);
  for (auto [value, key] : {std::pair{c.hidden_size, "hidden_size"}, {c.intermediate_size, "intermediate_size"},
                            {c.num_hidden_layers, "num_hidden_layers"}, {c.num_attention_heads, "num_attention_heads"},
                            {c.num_key_value_heads, "num_key_value_heads"}, {c.vocab_size, "vocab_size"}})
    require_positive(value, key, source);
  c.head_dim = c.hidden_size / c.num_attention_heads;
  read_key(j, "head_dim", c.head_dim, source, false);
  require_positive(c.head_dim, "head_dim", source);
  if (c.head_dim % 2) config_error(source, "\"head_dim\" must be even for RoPE, got " + std::to_string(c.head_dim));
  if (c.num_attention_heads % c.num_key_value_heads)
    config_error(source, "num_attention_heads (" + std::to_string(c.num_attention_heads) +
                             ") must be a multiple of num_key_value_heads (" + std::to_string(c.num_key_value_heads) + ")");
  read_key(j, "max_position_embeddings", c.max_position_embeddings, source, false);
  read_key(j, "rms_norm_eps", c.rms_norm_eps, source, false);
  read_key(j, "rope_theta", c.rope_theta, source, false);
  read_key(j, "tie_word_embeddings", c.tie_word_embeddings, source, false);
  read_key(j, "attention_bias", c.attention_bias, source, false);
  read_key(j, "mlp_bias", c.mlp_bias, source, false);
  read_key(j, "initializer_range", c.initializer_range, source, false);
  read_key(j, "bos_token_id", c.bos_token_id, source, false);
  read_key(j, "eos_token_id", c.eos_token_id, source, false);
  if (auto it = j.find("rope_scaling"); it != j.end()) c.rope_scaling = parse_rope_scaling(*it, source);
  return c;
}

LlamaConfig LlamaConfig::load(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string file = fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
  std::ifstream in(file);
  if (!in) throw Error(file + ": cannot open the model config");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    throw Error(file + ": not valid JSON: " + e.what());
  }
  return from_json(j, file);
}

json LlamaConfig::to_json() const {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_act", "silu"},
          {"hidden_size", hidden_size},
          {"intermediate_size", intermediate_size},
          {"num_hidden_layers", num_hidden_layers},
          {"num_attention_heads", num_attention_heads},
          {"num_key_value_heads", num_key_value_heads},
          {"head_dim", head_dim},
          {"vocab_size", vocab_size},
          {"max_position_embeddings", max_position_embeddings},
          {"rms_norm_eps", rms_norm_eps},
          {"rope_theta", rope_theta},
          {"rope_scaling", rope_scaling_json(rope_scaling)},
          {"tie_word_embeddings", tie_word_embeddings},
          {"attention_bias", attention_bias},
          {"mlp_bias", mlp_bias},
          {"initializer_range", initializer_range},
          {"bos_token_id", bos_token_id},
          {"eos_token_id", eos_token_id}};
}

// HF's _compute_default_rope_parameters, _compute_linear_scaling_rope_parameters and
// _compute_llama3_parameters.
std::vector<double> LlamaConfig::rope_inv_freq() const {
  const int64_t half = head_dim / 2;
  std::vector<double> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) inv_freq[i] = 1.0 / std::pow(rope_theta, (2.0 * i) / head_dim);
  const RopeScaling& s = rope_scaling;
  if (s.type == RopeScaling::Type::linear) {
    for (double& f : inv_freq) f /= s.factor;
  } else if (s.type == RopeScaling::Type::llama3) {
    const double original = static_cast<double>(s.original_max_position_embeddings);
    const double low_freq_wavelen = original / s.low_freq_factor;
    const double high_freq_wavelen = original / s.high_freq_factor;
    for (double& f : inv_freq) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_freq_wavelen) {
        f /= s.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth = (original / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv_freq;
}

int64_t LlamaConfig::num_parameters() const {
  const int64_t d = hidden_size, f = intermediate_size;
  int64_t per_layer = d * q_dim() + 2 * d * kv_dim() + q_dim() * d + 3 * d * f + 2 * d;
  if (attention_bias) per_layer += q_dim() + 2 * kv_dim() + d;
  if (mlp_bias) per_layer += 2 * f + d;
  return vocab_size * d * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * per_layer + d;
}

}  // namespace fe
