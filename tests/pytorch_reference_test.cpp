// The CPU engine against an independent PyTorch implementation of HF Llama, Mistral and Qwen2 +
// PEFT LoRA (tests/reference/llama_reference.py, float64, Debian's python3-torch). For each model
// variant the test writes a random HF checkpoint and a PEFT adapter to disk, loads them back
// through the engine's loaders, and compares logits, loss and every LoRA gradient. The sequences
// are 16 long, so a Mistral window of 5 masks most of each row.
//
// Without torch the test skips, unless FE_REQUIRE_TORCH=1 (CI sets it) makes that a failure.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/llama_model.h"
#include "engine/safetensors.h"
#include "tests/test_util.h"
#include "tests/torch_reference.h"

namespace fe {
namespace {

using test::relative_error;

struct Case {
  std::string name;
  ModelType model_type = ModelType::llama;
  int64_t sliding_window = 0;
  std::vector<bool> sliding_layers;  // empty: every layer slides (when sliding_window > 0)
  int64_t kv_heads = 2;
  int64_t head_dim = 8;
  bool tied = false;
  bool bias = false;
  RopeScaling rope;
  DType storage = DType::f32;
  bool sharded = false;
  std::vector<Proj> targets = {Proj::q, Proj::v};
  bool rslora = false;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

LlamaConfig case_config(const Case& k) {
  LlamaConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 8;
  c.num_key_value_heads = k.kv_heads;
  c.head_dim = k.head_dim;
  c.vocab_size = 128;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.rope_scaling = k.rope;
  c.tie_word_embeddings = k.tied;
  c.attention_bias = c.mlp_bias = k.bias;
  c.model_type = k.model_type;
  c.sliding_window = k.sliding_window;
  c.sliding_layers = k.sliding_layers;
  c.initializer_range = 0.1;
  return c;
}

// Writes the checkpoint in two shards with an index, as HF does for large models.
void save_sharded(const LlamaWeights& w, const std::string& dir, DType dtype) {
  namespace fs = std::filesystem;
  w.save(dir, dtype);  // config.json (and a single file, replaced below)
  fs::remove(fs::path(dir) / "model.safetensors");
  const auto named = w.named_tensors();
  std::vector<Tensor> stored;
  for (const auto& entry : named) stored.push_back(entry.second.to(dtype));
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  const size_t half = named.size() / 2;
  for (int shard = 0; shard < 2; ++shard) {
    const std::string file = "model-0000" + std::to_string(shard + 1) + "-of-00002.safetensors";
    std::vector<std::pair<std::string, View>> views;
    for (size_t i = shard ? half : 0; i < (shard ? named.size() : half); ++i) {
      views.emplace_back(named[i].first, stored[i].view());
      index["weight_map"][named[i].first] = file;
    }
    write_safetensors((fs::path(dir) / file).string(), views);
  }
  std::ofstream(fs::path(dir) / "model.safetensors.index.json") << index.dump(2);
}

class PyTorchReference : public ::testing::TestWithParam<Case> {};

TEST_P(PyTorchReference, LogitsLossAndLoraGradientsMatch) {
  FE_NEED_TORCH();
  const Case& k = GetParam();
  const LlamaConfig config = case_config(k);
  test::TempDir dir;

  // Random model with non-trivial norms and biases, written as an HF checkpoint.
  LlamaWeights random = LlamaWeights::random(config, 100, DType::f32);
  Rng rng(101);
  for (auto& [name, t] : random.named_tensors()) {
    if (name.ends_with("norm.weight")) rng.fill_normal(t, 1.0, 0.1);
    if (name.ends_with(".bias")) rng.fill_normal(t, 0.0, 0.1);
  }
  if (k.sharded)
    save_sharded(random, dir.path("model"), k.storage);
  else
    random.save(dir.path("model"), k.storage);

  // An adapter with non-zero B (PEFT's B = 0 would leave A without gradient).
  LoraConfig lora_config;
  lora_config.rank = 4;
  lora_config.alpha = 8;
  lora_config.targets = k.targets;
  lora_config.use_rslora = k.rslora;
  LoraAdapter adapter = LoraAdapter::init(config, lora_config, 102, DType::f32);
  for (auto& [name, t] : adapter.named_tensors())
    if (name.find("lora_B") != std::string::npos) rng.fill_normal(t, 0.0, 0.1);
  adapter.save_peft(dir.path("adapter"));

  const int64_t batch = 2, seq = 16;
  Tensor ids = Tensor::empty(Shape{batch, seq}, DType::i32), labels = Tensor::empty(Shape{batch, seq}, DType::i32);
  for (int64_t i = 0; i < batch * seq; ++i) {
    ids.as<int32_t>()[i] = static_cast<int32_t>(rng.next_u64() % config.vocab_size);
    labels.as<int32_t>()[i] = i % 5 == 3 ? -100 : ids.as<int32_t>()[i];
  }
  write_safetensors(dir.path("batch.safetensors"), {{"input_ids", ids}, {"labels", labels}});

  const SafetensorsCheckpoint reference =
      test::run_llama_reference(dir.path("model"), dir.path("adapter"), dir.path("batch.safetensors"), dir.path());

  // f32 is the engine's CPU precision (the acceptance bar: 1e-4); f64 on the same stored values
  // must agree to rounding, which catches any semantic difference a loose tolerance could hide.
  for (const auto& [dtype, tolerance] : {std::pair{DType::f32, 1e-4}, std::pair{DType::f64, 1e-10}}) {
    SCOPED_TRACE(dtype_name(dtype));
    const LlamaModel model(LlamaWeights::load(dir.path("model"), dtype));
    const LoraAdapter lora = LoraAdapter::load_peft(dir.path("adapter"), config, dtype);
    const Tensor logits = model.logits(ids, &lora);
    EXPECT_LT(relative_error(logits.to(DType::f64), reference.load("logits", logits.shape(), DType::f64)), tolerance);

    LoraAdapter grads = lora.zeros_like();
    const int64_t tokens = count_label_tokens(labels);
    const LossSum loss = model.forward_backward(ids, labels, &lora, &grads, 1.0 / tokens);
    const double expected_loss = reference.load("loss", Shape{1}, DType::f64).as<double>()[0];
    EXPECT_NEAR(loss.mean(), expected_loss, tolerance * expected_loss);
    for (const auto& [name, grad] : grads.named_tensors())
      EXPECT_LT(relative_error(grad.to(DType::f64), reference.load("grad." + name, grad.shape(), DType::f64)), tolerance)
          << name;
  }
}

const std::vector<Proj> kAll(kAllProj.begin(), kAllProj.end());

INSTANTIATE_TEST_SUITE_P(
    Llama, PyTorchReference,
    ::testing::Values(
        Case{.name = "gqa_untied", .targets = kAll}, Case{.name = "mha_tied", .kv_heads = 8, .tied = true},
        Case{.name = "llama3_rope_bias_rslora",
             .kv_heads = 4,
             .bias = true,
             .rope = {RopeScaling::Type::llama3, 8.0, 1.0, 4.0, 16},
             .targets = kAll,
             .rslora = true},
        Case{.name = "bf16_sharded_linear_rope_wide_heads",
             .kv_heads = 1,
             .head_dim = 16,
             .rope = {RopeScaling::Type::linear, 2.0},
             .storage = DType::bf16,
             .sharded = true,
             .targets = {Proj::k, Proj::o, Proj::down}},
        Case{.name = "mistral_window5_gqa", .model_type = ModelType::mistral, .sliding_window = 5, .targets = kAll},
        Case{.name = "mistral_window1_mqa", .model_type = ModelType::mistral, .sliding_window = 1, .kv_heads = 1},
        Case{.name = "qwen2_qkv_bias_gqa_tied", .model_type = ModelType::qwen2, .tied = true, .targets = kAll},
        Case{.name = "qwen2_sliding_second_layer",
             .model_type = ModelType::qwen2,
             .sliding_window = 3,
             .sliding_layers = {false, true},
             .kv_heads = 4,
             .targets = kAll}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace fe
