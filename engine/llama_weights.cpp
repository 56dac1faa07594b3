#include "engine/llama_weights.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/durable_file.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "kernels/elementwise.h"

namespace fe {
namespace {

std::string layer_path(int64_t layer) { return "model.layers." + std::to_string(layer); }

// Visits every tensor slot of the structure with its HF name and expected shape; loading, saving,
// random init and zeros_like are all walks over this one list.
template <class W, class Fn>
void for_each_slot(W& w, Fn&& fn) {
  const LlamaConfig& c = w.config;
  const int64_t d = c.hidden_size;
  fn("model.embed_tokens.weight", w.embed_tokens, Shape{c.vocab_size, d});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    auto& layer = w.layers[l];
    fn(layer_path(l) + ".input_layernorm.weight", layer.input_layernorm, Shape{d});
    for (Proj p : kAllProj) {
      const auto [out, in] = proj_shape(c, p);
      fn(proj_path(l, p) + ".weight", layer[p].weight, Shape{out, in});
      if (proj_has_bias(c, p)) fn(proj_path(l, p) + ".bias", layer[p].bias, Shape{out});
    }
    fn(layer_path(l) + ".post_attention_layernorm.weight", layer.post_attention_layernorm, Shape{d});
  }
  fn("model.norm.weight", w.norm, Shape{d});
  if (!c.tie_word_embeddings) fn("lm_head.weight", w.lm_head, Shape{c.vocab_size, d});
}

LlamaWeights with_config(const LlamaConfig& config) {
  LlamaWeights w;
  w.config = config;
  w.layers.resize(config.num_hidden_layers);
  return w;
}

void tie_if_needed(LlamaWeights& w) {
  if (w.config.tie_word_embeddings) w.lm_head = w.embed_tokens;
}

bool is_norm(const std::string& name) { return name.ends_with("norm.weight"); }

// The layer index of a "model.layers.N.…" tensor name; -1 for other names.
int64_t layer_of(const std::string& name) {
  constexpr std::string_view prefix = "model.layers.";
  if (!name.starts_with(prefix)) return -1;
  int64_t layer = 0;
  size_t i = prefix.size();
  for (; i < name.size() && i < prefix.size() + 9 && name[i] >= '0' && name[i] <= '9'; ++i)
    layer = layer * 10 + (name[i] - '0');
  return i > prefix.size() && i < name.size() && name[i] == '.' ? layer : -1;
}

// A checkpoint with more layers than its config declares would load as a shallower model.
void require_no_undeclared_layers(const SafetensorsCheckpoint& checkpoint, const LlamaConfig& c,
                                  const std::string& dir) {
  for (const std::string& name : checkpoint.names())
    if (const int64_t layer = layer_of(name); layer >= c.num_hidden_layers)
      throw Error(dir + ": the checkpoint has tensors for layer " + std::to_string(layer) + " ('" + name +
                  "'), but config.json declares num_hidden_layers " + std::to_string(c.num_hidden_layers) +
                  " (layers 0 to " + std::to_string(c.num_hidden_layers - 1) +
                  "); set num_hidden_layers in config.json to the checkpoint's number of layers");
}

}  // namespace

const char* proj_name(Proj p) {
  static constexpr const char* names[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                          "gate_proj", "up_proj", "down_proj"};
  return names[static_cast<int>(p)];
}

std::optional<Proj> proj_from_name(std::string_view name) {
  for (Proj p : kAllProj) {
    const std::string_view full = proj_name(p);
    if (name == full || name == full.substr(0, full.size() - 5)) return p;
  }
  return std::nullopt;
}

std::string proj_path(int64_t layer, Proj p) {
  const bool attention = p == Proj::q || p == Proj::k || p == Proj::v || p == Proj::o;
  return layer_path(layer) + (attention ? ".self_attn." : ".mlp.") + proj_name(p);
}

std::pair<int64_t, int64_t> proj_shape(const LlamaConfig& c, Proj p) {
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  switch (p) {
    case Proj::q: return {c.q_dim(), d};
    case Proj::k:
    case Proj::v: return {c.kv_dim(), d};
    case Proj::o: return {d, c.q_dim()};
    case Proj::gate:
    case Proj::up: return {f, d};
    case Proj::down: return {d, f};
  }
  return {0, 0};
}

bool proj_has_bias(const LlamaConfig& c, Proj p) {
  switch (p) {
    case Proj::q:
    case Proj::k:
    case Proj::v:
      return c.has_qkv_bias();
    case Proj::o:
      return c.has_o_bias();
    case Proj::gate:
    case Proj::up:
    case Proj::down:
      return c.has_mlp_bias();
  }
  return false;
}

LlamaWeights LlamaWeights::load(const std::string& dir, DType dtype) {
  LlamaWeights w = with_config(LlamaConfig::load(dir));
  const SafetensorsCheckpoint checkpoint(dir);
  require_no_undeclared_layers(checkpoint, w.config, dir);
  for_each_slot(w, [&](const std::string& name, Tensor& slot, const Shape& shape) {
    slot = checkpoint.load(name, shape, dtype);
  });
  tie_if_needed(w);
  return w;
}

LlamaWeights LlamaWeights::random(const LlamaConfig& config, uint64_t seed, DType dtype) {
  LlamaWeights w = with_config(config);
  Rng rng(seed);
  for_each_slot(w, [&](const std::string& name, Tensor& slot, const Shape& shape) {
    slot = Tensor::empty(shape, dtype);
    if (is_norm(name))
      kernels::fill(slot, 1.0);
    else if (name.ends_with(".bias"))
      kernels::fill(slot, 0.0);
    else
      rng.fill_normal(slot, 0.0, config.initializer_range);
  });
  tie_if_needed(w);
  return w;
}

std::vector<std::pair<std::string, Tensor>> LlamaWeights::named_tensors() const {
  std::vector<std::pair<std::string, Tensor>> named;
  for_each_slot(*this, [&](const std::string& name, const Tensor& slot, const Shape&) {
    named.emplace_back(name, slot);
  });
  return named;
}

LlamaWeights LlamaWeights::zeros_like() const {
  LlamaWeights g = with_config(config);
  for_each_slot(g, [&](const std::string&, Tensor& slot, const Shape& shape) {
    slot = Tensor::zeros(shape, dtype(), device());
  });
  tie_if_needed(g);
  return g;
}

LlamaWeights LlamaWeights::converted(DType dtype) const {
  LlamaWeights c = *this;
  for_each_slot(c, [&](const std::string&, Tensor& slot, const Shape&) { slot = slot.to(dtype); });
  tie_if_needed(c);
  return c;
}

LlamaWeights LlamaWeights::to_device(Device device) const {
  LlamaWeights c = *this;
  for_each_slot(c, [&](const std::string&, Tensor& slot, const Shape&) { slot = slot.to_device(device); });
  tie_if_needed(c);
  return c;
}

void LlamaWeights::save(const std::string& dir, DType dtype) const {
  namespace fs = std::filesystem;
  require_finite(named_tensors(), dir);
  fs::create_directories(dir);
  std::vector<Tensor> converted;  // keeps the converted copies alive while writing
  std::vector<std::pair<std::string, View>> views;
  for (const auto& [name, tensor] : named_tensors()) {
    Tensor stored = tensor.dtype() == dtype ? tensor : tensor.to(dtype);
    converted.push_back(stored.device() == Device::cpu ? stored : stored.to_device(Device::cpu));
    views.emplace_back(name, converted.back().view());
  }
  write_safetensors((fs::path(dir) / "model.safetensors").string(), views, {{"format", "pt"}});
  nlohmann::json j = config.to_json();
  j["torch_dtype"] = dtype == DType::bf16 ? "bfloat16" : dtype == DType::f16 ? "float16" : "float32";
  write_file_whole((fs::path(dir) / "config.json").string(), j.dump(2) + "\n");
}

}  // namespace fe
