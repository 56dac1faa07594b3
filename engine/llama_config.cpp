#include "engine/llama_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>

#include "core/error.h"

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

// `key` is "rope_scaling" or (transformers 5) "rope_parameters": the same fields.
RopeScaling parse_rope_scaling(const json& j, const char* key, const std::string& source) {
  RopeScaling s;
  if (j.is_null()) return s;
  if (!j.is_object()) config_error(source, std::string("\"") + key + "\" should be an object or null");
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
      config_error(source, std::string(key) + " needs high_freq_factor > low_freq_factor");
  } else {
    config_error(source,
                 std::string(key) + " type \"" + type + "\" is not supported (supported: default, linear, llama3)");
  }
  read_key(j, "factor", s.factor, source, true);
  if (s.factor <= 0) config_error(source, std::string(key) + ".factor must be positive");
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

std::string read_string(const json& j, const char* key, const std::string& fallback, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_string()) config_error(source, std::string("key \"") + key + "\" should be a string, got " + it->dump());
  return it->get<std::string>();
}

ModelType parse_model_type(const json& j, const std::string& source) {
  const std::string type = read_string(j, "model_type", "llama", source);
  for (ModelType t : {ModelType::llama, ModelType::mistral, ModelType::qwen2})
    if (type == model_type_name(t)) return t;
  config_error(source, "unsupported architecture: model_type \"" + type +
                           "\" (supported: llama, mistral, qwen2); other architectures compute differently");
}

// HF's sliding_window: absent means MistralConfig's and Qwen2Config's default 4096, null means none (0).
int64_t parse_sliding_window(const json& j, const std::string& source) {
  auto it = j.find("sliding_window");
  if (it == j.end()) return 4096;
  if (it->is_null()) return 0;
  if (!it->is_number_integer() || it->get<int64_t>() <= 0)
    config_error(source, "\"sliding_window\" must be a positive integer (keys per query) or null (full attention), " +
                             std::string("got ") + it->dump());
  return it->get<int64_t>();
}

// Qwen2's layer_types: one "full_attention" or "sliding_attention" per layer; true where it slides.
std::vector<bool> parse_layer_types(const json& types, int64_t layers, const std::string& source) {
  if (!types.is_array() || static_cast<int64_t>(types.size()) != layers)
    config_error(source, "\"layer_types\" should be a list of " + std::to_string(layers) +
                             " entries (one per layer), got " + types.dump());
  std::vector<bool> sliding;
  for (size_t i = 0; i < types.size(); ++i) {
    const json& t = types[i];
    if (t == "full_attention" || t == "sliding_attention") {
      sliding.push_back(t == "sliding_attention");
    } else {
      config_error(source, "layer_types[" + std::to_string(i) + "] is " + t.dump() +
                               " (supported: \"full_attention\", \"sliding_attention\")");
    }
  }
  return sliding;
}

// Qwen2Config: a window only with use_sliding_window, on the layers layer_types marks sliding, by
// default those at or above max_window_layers.
void parse_qwen2_windows(const json& j, LlamaConfig& c, const std::string& source) {
  bool use_sliding_window = false;
  read_key(j, "use_sliding_window", use_sliding_window, source, false);
  const int64_t window = use_sliding_window ? parse_sliding_window(j, source) : 0;
  int64_t max_window_layers = 28;
  read_key(j, "max_window_layers", max_window_layers, source, false);
  std::vector<bool> sliding(c.num_hidden_layers, false);
  if (auto it = j.find("layer_types"); it != j.end() && !it->is_null()) {
    sliding = parse_layer_types(*it, c.num_hidden_layers, source);
  } else if (window > 0) {
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) sliding[l] = l >= max_window_layers;
  }
  const bool any_sliding = std::find(sliding.begin(), sliding.end(), true) != sliding.end();
  if (any_sliding && window == 0)
    config_error(source,
                 "\"layer_types\" marks sliding_attention layers but there is no window (use_sliding_window is " +
                     std::string(use_sliding_window ? "true with sliding_window null" : "false") +
                     "); set use_sliding_window true and a sliding_window, or make every layer full_attention");
  if (any_sliding) {
    c.sliding_window = window;
    c.sliding_layers = sliding;
  }
}

// eos_token_id: one id, a list of ids (Llama 3.1), or null (keeps the default).
void read_eos(const json& j, std::vector<int64_t>& out, const std::string& source) {
  auto it = j.find("eos_token_id");
  if (it == j.end() || it->is_null()) return;
  std::vector<int64_t> ids;
  for (const json& id : it->is_array() ? *it : json::array({*it})) {
    if (!id.is_number_integer())
      config_error(source, "key \"eos_token_id\" should be an integer or a list of integers, got " + it->dump());
    ids.push_back(id.get<int64_t>());
  }
  if (ids.empty()) config_error(source, "key \"eos_token_id\" is an empty list");
  out = ids;
}

// transformers 5 keeps rope_theta and the scaling together in rope_parameters.
void parse_rope(const json& j, LlamaConfig& c, const std::string& source) {
  auto params = j.find("rope_parameters");
  auto scaling = j.find("rope_scaling");
  const bool has_scaling = scaling != j.end() && !scaling->is_null();
  if (params == j.end() || params->is_null()) {
    read_key(j, "rope_theta", c.rope_theta, source, false);
    if (has_scaling) c.rope_scaling = parse_rope_scaling(*scaling, "rope_scaling", source);
    return;
  }
  if (has_scaling) config_error(source, "both \"rope_scaling\" and \"rope_parameters\" are set; keep one");
  if (!params->is_object()) config_error(source, "\"rope_parameters\" should be an object or null");
  if (params->contains("full_attention") || params->contains("sliding_attention"))
    config_error(source, "\"rope_parameters\" per layer type is not supported (one RoPE for every layer)");
  double partial = 1.0;
  read_key(*params, "partial_rotary_factor", partial, source, false);
  if (partial != 1.0)
    config_error(source, "rope_parameters.partial_rotary_factor " + params->at("partial_rotary_factor").dump() +
                             " is not supported (RoPE on the whole head: 1.0)");
  read_key(*params, "rope_theta", c.rope_theta, source, true);
  c.rope_scaling = parse_rope_scaling(*params, "rope_parameters", source);
}

const char* architecture_name(ModelType type) {
  switch (type) {
    case ModelType::llama:
      return "LlamaForCausalLM";
    case ModelType::mistral:
      return "MistralForCausalLM";
    case ModelType::qwen2:
      return "Qwen2ForCausalLM";
  }
  return "";
}

}  // namespace

const char* model_type_name(ModelType type) {
  switch (type) {
    case ModelType::llama:
      return "llama";
    case ModelType::mistral:
      return "mistral";
    case ModelType::qwen2:
      return "qwen2";
  }
  return "";
}

LlamaConfig LlamaConfig::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) config_error(source, "expected a JSON object");
  LlamaConfig c;
  c.model_type = parse_model_type(j, source);
  const std::string act = read_string(j, "hidden_act", "silu", source);
  if (act != "silu")
    config_error(
        source, "unsupported hidden_act \"" + act + "\" (supported: silu, the SwiGLU MLP of llama, mistral and qwen2)");

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
  require_positive(c.max_position_embeddings, "max_position_embeddings", source);
  read_key(j, "rms_norm_eps", c.rms_norm_eps, source, false);
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps))
    config_error(source, "\"rms_norm_eps\" must be > 0 and finite (RMSNorm divides by √(mean(x²) + eps)), got " +
                             j["rms_norm_eps"].dump() + "; Llama models use 1e-5 or 1e-6");
  parse_rope(j, c, source);
  read_key(j, "tie_word_embeddings", c.tie_word_embeddings, source, false);
  read_key(j, "initializer_range", c.initializer_range, source, false);
  read_key(j, "bos_token_id", c.bos_token_id, source, false);
  read_eos(j, c.eos_token_ids, source);
  switch (c.model_type) {  // what HF's config class of each architecture reads
    case ModelType::llama:
      read_key(j, "attention_bias", c.attention_bias, source, false);
      read_key(j, "mlp_bias", c.mlp_bias, source, false);
      break;
    case ModelType::mistral:
      c.sliding_window = parse_sliding_window(j, source);
      break;
    case ModelType::qwen2:
      parse_qwen2_windows(j, c, source);
      break;
  }
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
  json j = {{"architectures", {architecture_name(model_type)}},
            {"model_type", model_type_name(model_type)},
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
            {"initializer_range", initializer_range},
            {"bos_token_id", bos_token_id},
            {"eos_token_id", eos_token_ids.size() == 1 ? json(eos_token_ids[0]) : json(eos_token_ids)}};
  const json window = sliding_window > 0 ? json(sliding_window) : json(nullptr);
  switch (model_type) {
    case ModelType::llama:
      if (sliding_window > 0) throw Error("LlamaConfig: model_type llama has no sliding window (use mistral or qwen2)");
      j["attention_bias"] = attention_bias;
      j["mlp_bias"] = mlp_bias;
      break;
    case ModelType::mistral:
      if (std::find(sliding_layers.begin(), sliding_layers.end(), false) != sliding_layers.end())
        throw Error("LlamaConfig: model_type mistral slides on every layer or none (per-layer windows: qwen2)");
      j["sliding_window"] = window;
      break;
    case ModelType::qwen2: {
      json types = json::array();
      int64_t leading_full = 0;  // max_window_layers: exact where the sliding layers are a suffix
      for (int64_t l = 0; l < num_hidden_layers; ++l) {
        const bool slides = attention_window(l) > 0;
        types.push_back(slides ? "sliding_attention" : "full_attention");
        if (!slides && leading_full == l) ++leading_full;
      }
      j["use_sliding_window"] = sliding_window > 0;
      j["sliding_window"] = window;
      j["max_window_layers"] = leading_full;
      j["layer_types"] = types;
      break;
    }
  }
  return j;
}

int64_t LlamaConfig::attention_window(int64_t layer) const {
  if (sliding_window == 0) return 0;
  if (sliding_layers.empty()) return sliding_window;
  if (static_cast<int64_t>(sliding_layers.size()) != num_hidden_layers || layer < 0 || layer >= num_hidden_layers)
    throw Error("LlamaConfig: sliding_layers holds " + std::to_string(sliding_layers.size()) + " entries for " +
                std::to_string(num_hidden_layers) + " layers (asked for layer " + std::to_string(layer) + ")");
  return sliding_layers[layer] ? sliding_window : 0;
}

bool LlamaConfig::has_qkv_bias() const {
  return model_type == ModelType::qwen2 || (model_type == ModelType::llama && attention_bias);
}

bool LlamaConfig::has_o_bias() const { return model_type == ModelType::llama && attention_bias; }

bool LlamaConfig::has_mlp_bias() const { return model_type == ModelType::llama && mlp_bias; }

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
  if (has_qkv_bias()) per_layer += q_dim() + 2 * kv_dim();
  if (has_o_bias()) per_layer += d;
  if (has_mlp_bias()) per_layer += 2 * f + d;
  return vocab_size * d * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * per_layer + d;
}

}  // namespace fe
