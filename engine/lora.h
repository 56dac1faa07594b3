// engine/lora.h — LoRA adapters: configuration, PEFT initialisation, PEFT files.
//
// For each targeted projection of each layer, A [r, in] and B [out, r] add scale·(x·Aᵀ)·Bᵀ to the
// frozen projection, scale = alpha/r (alpha/√r with rsLoRA). Fresh adapters follow PEFT: A from
// kaiming_uniform(a=√5), i.e. U(−1/√in, 1/√in), and B = 0, so training starts at the base model.
// On disk an adapter is PEFT's: adapter_config.json + adapter_model.safetensors with names like
// base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "engine/llama_weights.h"

namespace fe {

// The two files of a PEFT adapter directory.
inline constexpr char kPeftConfigFile[] = "adapter_config.json";
inline constexpr char kPeftWeightsFile[] = "adapter_model.safetensors";

// DIR/adapter_model.safetensors, the weights of the PEFT adapter in DIR. An Error when DIR holds
// PEFT's pickled adapter_model.bin instead (fedengine reads safetensors only), with the command
// that converts it.
std::string peft_weights_file(const std::string& dir);

struct LoraConfig {
  int64_t rank = 8;
  double alpha = 16;
  bool use_rslora = false;
  std::vector<Proj> targets = {Proj::q, Proj::v};

  double scale() const;
  bool targets_proj(Proj p) const;
  // PEFT's adapter_config.json fields; `source` names the file in error messages.
  static LoraConfig from_peft_json(const nlohmann::json& j, const std::string& source);
  // The config of the PEFT adapter in DIR (its adapter_config.json).
  static LoraConfig load_peft(const std::string& dir);
  nlohmann::json to_peft_json(const std::string& base_model) const;
};

struct LoraPair {
  Tensor a;  // [r, in]
  Tensor b;  // [out, r]
  bool defined() const { return a.defined(); }
};

struct LoraAdapter {
  LoraConfig config;
  std::vector<std::array<LoraPair, kNumProj>> layers;

  LoraPair& at(int64_t layer, Proj p) { return layers[layer][static_cast<int>(p)]; }
  const LoraPair& at(int64_t layer, Proj p) const { return layers[layer][static_cast<int>(p)]; }

  // PEFT's initialisation for `model`.
  static LoraAdapter init(const LlamaConfig& model, const LoraConfig& config, uint64_t seed, DType dtype);
  // Loading and saving refuse non-finite matrices with an Error naming the file and tensor.
  static LoraAdapter load_peft(const std::string& dir, const LlamaConfig& model, DType dtype);
  // base_model: the adapter_config.json's base_model_name_or_path; an existing directory is
  // written as its absolute path, so that HF tools find the base from anywhere.
  void save_peft(const std::string& dir, const std::string& base_model = "") const;
  // Zeros of the same structure, dtype and device: the gradient buffers.
  LoraAdapter zeros_like(DType dtype) const;
  LoraAdapter zeros_like() const { return zeros_like(dtype()); }
  // A copy with every matrix converted to dtype.
  LoraAdapter converted(DType dtype) const;
  // A copy on `device` (the GPU trainer keeps its fp32 master weights there).
  LoraAdapter to_device(Device device) const;
  // The dtype and device of the matrices (f32 and cpu when the adapter targets nothing).
  DType dtype() const;
  Device device() const;
  // Every A and B under its PEFT name, layer by layer.
  std::vector<std::pair<std::string, Tensor>> named_tensors() const;
  // What training changes: the elements of every A and B.
  int64_t num_parameters() const;
};

// The largest useful rank for adapters on `targets` of `model`: the smallest input or output size
// among those projections (B·A has no higher rank). LoraAdapter::init refuses a larger rank.
int64_t max_lora_rank(const LlamaConfig& model, const std::vector<Proj>& targets);

// The base weights with the adapter folded in: W + scale·B·A for every targeted projection (what
// PEFT's merge_and_unload does). The result no longer needs the adapter.
LlamaWeights merge_lora(const LlamaWeights& weights, const LoraAdapter& adapter);

// "base_model.model.model.layers.3.mlp.up_proj.lora_B.weight"
std::string peft_name(int64_t layer, Proj p, bool b_matrix);

}  // namespace fe
