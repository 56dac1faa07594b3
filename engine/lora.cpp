#include "engine/lora.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/durable_file.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "kernels/linear.h"

namespace fe {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// Visits every (A, B) slot the config targets, with shapes.
template <class Adapter, class Fn>
void for_each_pair(Adapter& adapter, const LlamaConfig& model, Fn&& fn) {
  for (int64_t l = 0; l < static_cast<int64_t>(adapter.layers.size()); ++l)
    for (Proj p : adapter.config.targets) {
      const auto [out, in] = proj_shape(model, p);
      fn(l, p, adapter.at(l, p), Shape{adapter.config.rank, in}, Shape{out, adapter.config.rank});
    }
}

LoraAdapter empty_adapter(const LlamaConfig& model, const LoraConfig& config) {
  LoraAdapter adapter;
  adapter.config = config;
  adapter.layers.resize(model.num_hidden_layers);
  return adapter;
}

// A copy of the adapter with fn applied to every matrix.
template <class Fn>
LoraAdapter map_pairs(const LoraAdapter& adapter, Fn&& fn) {
  LoraAdapter out = adapter;
  for (auto& layer : out.layers)
    for (LoraPair& pair : layer)
      if (pair.defined()) pair = {fn(pair.a), fn(pair.b)};
  return out;
}

}  // namespace

double LoraConfig::scale() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

bool LoraConfig::targets_proj(Proj p) const {
  return std::find(targets.begin(), targets.end(), p) != targets.end();
}

LoraConfig LoraConfig::from_peft_json(const json& j, const std::string& source) {
  auto fail = [&](const std::string& what) -> void { throw Error(source + ": " + what); };
  if (!j.is_object()) fail("expected a JSON object");
  if (j.value("peft_type", std::string("LORA")) != "LORA") fail("peft_type must be \"LORA\"");
  LoraConfig c;
  if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<int64_t>() <= 0)
    fail("\"r\" must be a positive integer");
  c.rank = j["r"].get<int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number()) fail("\"lora_alpha\" must be a number");
  c.alpha = j["lora_alpha"].get<double>();
  if (j.contains("use_rslora") && !j["use_rslora"].is_null()) c.use_rslora = j["use_rslora"].get<bool>();
  const json& targets = j.value("target_modules", json());
  if (!targets.is_array() || targets.empty())
    fail("\"target_modules\" must be a non-empty list such as [\"q_proj\", \"v_proj\"]");
  c.targets.clear();
  for (const json& t : targets) {
    const auto p = t.is_string() ? proj_from_name(t.get<std::string>()) : std::nullopt;
    if (!p) fail("target module " + t.dump() + " is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
    if (!c.targets_proj(*p)) c.targets.push_back(*p);
  }
  for (const char* unsupported : {"rank_pattern", "alpha_pattern"})
    if (j.contains(unsupported) && !j[unsupported].is_null() && !j[unsupported].empty())
      fail(std::string("\"") + unsupported + "\" is not supported");
  if (j.contains("layers_to_transform") && !j["layers_to_transform"].is_null())
    fail(
        "\"layers_to_transform\" is not supported: fedengine adapters adapt their target modules in every layer "
        "(train the adapter without layers_to_transform)");
  if (j.value("use_dora", false)) fail("DoRA adapters (use_dora) are not supported");
  return c;
}

json LoraConfig::to_peft_json(const std::string& base_model) const {
  json targets_json = json::array();
  for (Proj p : targets) targets_json.push_back(proj_name(p));
  return {{"peft_type", "LORA"},
          {"task_type", "CAUSAL_LM"},
          {"base_model_name_or_path", base_model},
          {"r", rank},
          {"lora_alpha", alpha},
          {"lora_dropout", 0.0},
          {"use_rslora", use_rslora},
          {"target_modules", targets_json},
          {"bias", "none"},
          {"fan_in_fan_out", false},
          {"inference_mode", true},
          {"init_lora_weights", true},
          {"modules_to_save", nullptr},
          {"use_dora", false}};
}

std::string peft_name(int64_t layer, Proj p, bool b_matrix) {
  return "base_model.model." + proj_path(layer, p) + (b_matrix ? ".lora_B.weight" : ".lora_A.weight");
}

int64_t max_lora_rank(const LlamaConfig& model, const std::vector<Proj>& targets) {
  int64_t rank = std::numeric_limits<int64_t>::max();
  for (Proj p : targets) {
    const auto [out, in] = proj_shape(model, p);
    rank = std::min({rank, out, in});
  }
  return rank;
}

LoraAdapter LoraAdapter::init(const LlamaConfig& model, const LoraConfig& config, uint64_t seed, DType dtype) {
  if (config.rank <= 0) throw Error("LoRA rank must be positive, got " + std::to_string(config.rank));
  if (const int64_t max_rank = max_lora_rank(model, config.targets); config.rank > max_rank)
    throw Error("LoRA rank " + std::to_string(config.rank) +
                " exceeds the targeted projections' dimensions: allowed 1 to " + std::to_string(max_rank) +
                " (the smallest input or output size); lower adapter.rank");
  LoraAdapter adapter = empty_adapter(model, config);
  Rng rng(seed);
  for_each_pair(adapter, model, [&](int64_t, Proj, LoraPair& pair, const Shape& a_shape, const Shape& b_shape) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(a_shape[1]));
    pair.a = Tensor::empty(a_shape, dtype);
    rng.fill_uniform(pair.a, -bound, bound);
    pair.b = Tensor::zeros(b_shape, dtype);
  });
  return adapter;
}

std::string peft_weights_file(const std::string& dir) {
  const fs::path weights = fs::path(dir) / kPeftWeightsFile;
  const fs::path pickle = fs::path(dir) / "adapter_model.bin";
  if (!fs::exists(weights) && fs::exists(pickle))
    throw Error(pickle.string() + ": a pickled PyTorch adapter; fedengine reads only " + kPeftWeightsFile +
                ". Convert it with python3 -c \"import torch, safetensors.torch as st; st.save_file(torch.load('" +
                pickle.string() + "', map_location='cpu'), '" + weights.string() +
                "', metadata={'format': 'pt'})\" (or save it with PEFT's save_pretrained(safe_serialization=True))");
  return weights.string();
}

LoraConfig LoraConfig::load_peft(const std::string& dir) {
  const std::string config_path = (fs::path(dir) / kPeftConfigFile).string();
  std::ifstream in(config_path);
  if (!in) throw Error(config_path + ": cannot open the adapter config");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    throw Error(config_path + ": not valid JSON: " + e.what());
  }
  return from_peft_json(j, config_path);
}

LoraAdapter LoraAdapter::load_peft(const std::string& dir, const LlamaConfig& model, DType dtype) {
  LoraAdapter adapter = empty_adapter(model, LoraConfig::load_peft(dir));
  const std::string weights_path = peft_weights_file(dir);
  const SafetensorsCheckpoint checkpoint(weights_path);
  std::set<std::string> expected;
  for_each_pair(adapter, model, [&](int64_t l, Proj p, LoraPair& pair, const Shape& a_shape, const Shape& b_shape) {
    pair.a = checkpoint.load(peft_name(l, p, false), a_shape, dtype);
    pair.b = checkpoint.load(peft_name(l, p, true), b_shape, dtype);
    expected.insert(peft_name(l, p, false));
    expected.insert(peft_name(l, p, true));
  });
  for (const std::string& name : checkpoint.names())
    if (!expected.count(name))
      throw Error(weights_path + ": unexpected tensor \"" + name +
                  "\" (not a LoRA matrix of a targeted module of this model)");
  return adapter;
}

namespace {

// HF tools (AutoPeftModelForCausalLM) load the base from this string wherever the adapter is used,
// not from the directory training ran in: a local model directory is recorded as an absolute path;
// anything else (a hub id, or nothing) as given.
std::string base_model_reference(const std::string& base_model) {
  std::error_code error;
  if (base_model.empty() || !fs::is_directory(base_model, error)) return base_model;
  fs::path absolute = fs::absolute(base_model).lexically_normal();
  if (!absolute.has_filename()) absolute = absolute.parent_path();  // "dir/" names dir
  return absolute.string();
}

}  // namespace

void LoraAdapter::save_peft(const std::string& dir, const std::string& base_model) const {
  if (device() != Device::cpu) return to_device(Device::cpu).save_peft(dir, base_model);
  const auto named = named_tensors();  // stored in the adapter's own dtype
  require_finite(named, dir);
  fs::create_directories(dir);
  std::vector<std::pair<std::string, View>> views(named.begin(), named.end());
  write_safetensors((fs::path(dir) / kPeftWeightsFile).string(), views, {{"format", "pt"}});
  write_file_whole((fs::path(dir) / kPeftConfigFile).string(),
                   config.to_peft_json(base_model_reference(base_model)).dump(2) + "\n");
}

LoraAdapter LoraAdapter::zeros_like(DType dtype) const {
  return map_pairs(*this, [dtype](const Tensor& t) { return Tensor::zeros(t.shape(), dtype, t.device()); });
}

LoraAdapter LoraAdapter::to_device(Device device) const {
  return map_pairs(*this, [device](const Tensor& t) { return t.to_device(device); });
}

namespace {

const Tensor* first_matrix(const LoraAdapter& adapter) {
  for (const auto& layer : adapter.layers)
    for (const LoraPair& pair : layer)
      if (pair.defined()) return &pair.a;
  return nullptr;
}

}  // namespace

DType LoraAdapter::dtype() const {
  const Tensor* a = first_matrix(*this);
  return a ? a->dtype() : DType::f32;
}

Device LoraAdapter::device() const {
  const Tensor* a = first_matrix(*this);
  return a ? a->device() : Device::cpu;
}

LoraAdapter LoraAdapter::converted(DType dtype) const {
  return map_pairs(*this, [dtype](const Tensor& t) { return t.to(dtype); });
}

std::vector<std::pair<std::string, Tensor>> LoraAdapter::named_tensors() const {
  std::vector<std::pair<std::string, Tensor>> named;
  for (int64_t l = 0; l < static_cast<int64_t>(layers.size()); ++l)
    for (Proj p : kAllProj)
      if (const LoraPair& pair = at(l, p); pair.defined()) {
        named.emplace_back(peft_name(l, p, false), pair.a);
        named.emplace_back(peft_name(l, p, true), pair.b);
      }
  return named;
}

int64_t LoraAdapter::num_parameters() const {
  int64_t count = 0;
  for (const auto& layer : layers)
    for (const LoraPair& pair : layer)
      if (pair.defined()) count += pair.a.numel() + pair.b.numel();
  return count;
}

}  // namespace fe

namespace fe {

LlamaWeights merge_lora(const LlamaWeights& weights, const LoraAdapter& adapter) {
  if (adapter.layers.size() != weights.layers.size())
    throw Error("merge_lora: the adapter has " + std::to_string(adapter.layers.size()) + " layers, the model " +
                std::to_string(weights.layers.size()));
  LlamaWeights merged = weights;
  for (size_t l = 0; l < merged.layers.size(); ++l)
    for (Proj p : kAllProj)
      if (const LoraPair& pair = adapter.at(l, p); pair.defined()) {
        Linear& linear = merged.layers[l][p];
        linear.weight = linear.weight.clone();  // never write into the caller's weights
        kernels::gemm(linear.weight, pair.b.to(linear.weight.dtype()), false, pair.a.to(linear.weight.dtype()), false,
                      adapter.config.scale(), 1.0);
      }
  return merged;
}

}  // namespace fe
