// engine/llama_weights.h — the frozen base model's tensors, by HF name.
//
// Loaded from an HF checkpoint of any architecture LlamaConfig reads (config.json + safetensors,
// single or sharded, f32/bf16/f16 on disk) and converted to the compute dtype, or drawn at random
// the way HF initialises a LlamaForCausalLM (normal(0, initializer_range) matrices, zero biases,
// unit norms), which is how the tests and the quickstart get small models.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/llama_config.h"
#include "engine/tensor.h"

namespace fe {

// The seven linear layers of a decoder layer, in HF order.
enum class Proj : int { q, k, v, o, gate, up, down };
inline constexpr int kNumProj = 7;
inline constexpr std::array<Proj, kNumProj> kAllProj = {Proj::q, Proj::k, Proj::v, Proj::o,
                                                        Proj::gate, Proj::up, Proj::down};
const char* proj_name(Proj p);  // "q_proj", ..., "down_proj"
// "q_proj" or "q" → Proj; nullopt for anything else.
std::optional<Proj> proj_from_name(std::string_view name);
// "model.layers.3.self_attn.q_proj", "model.layers.3.mlp.down_proj"
std::string proj_path(int64_t layer, Proj p);
// {out_features, in_features} of a projection.
std::pair<int64_t, int64_t> proj_shape(const LlamaConfig& c, Proj p);
// Whether the projection has a bias under the config's architecture (LlamaConfig::qkv_bias, ...).
bool proj_has_bias(const LlamaConfig& c, Proj p);

struct Linear {
  Tensor weight;  // [out, in]
  Tensor bias;    // [out], undefined without bias
};

struct LlamaLayerWeights {
  Tensor input_layernorm;           // [D]
  Tensor post_attention_layernorm;  // [D]
  std::array<Linear, kNumProj> proj;
  Linear& operator[](Proj p) { return proj[static_cast<int>(p)]; }
  const Linear& operator[](Proj p) const { return proj[static_cast<int>(p)]; }
};

struct LlamaWeights {
  LlamaConfig config;
  Tensor embed_tokens;  // [V, D]
  std::vector<LlamaLayerWeights> layers;
  Tensor norm;          // [D]
  Tensor lm_head;       // [V, D]; the same storage as embed_tokens when tie_word_embeddings

  // A checkpoint directory (config.json + model.safetensors or a sharded index). An Error names the
  // file and tensor when a tensor is not finite, and the layer when the checkpoint holds tensors of
  // layers beyond config.json's num_hidden_layers (they would be dropped silently).
  static LlamaWeights load(const std::string& dir, DType dtype);
  static LlamaWeights random(const LlamaConfig& config, uint64_t seed, DType dtype);
  // Writes config.json and model.safetensors (tensors stored as `dtype`) into dir; an Error, before
  // anything is written, when a tensor is not finite.
  void save(const std::string& dir, DType dtype) const;
  // Every tensor under its HF name, in checkpoint order; lm_head only when untied.
  std::vector<std::pair<std::string, Tensor>> named_tensors() const;
  // The same structure with zero tensors (same dtype and device): gradients for full-parameter
  // training.
  LlamaWeights zeros_like() const;
  // A copy with every tensor converted to dtype.
  LlamaWeights converted(DType dtype) const;
  // A copy on `device` (the GPU model: bf16 weights in GPU memory).
  LlamaWeights to_device(Device device) const;
  DType dtype() const { return embed_tokens.dtype(); }
  Device device() const { return embed_tokens.device(); }
};

}  // namespace fe
