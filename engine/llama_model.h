// engine/llama_model.h — forward and backward of a Llama decoder with LoRA.
//
// The config's architecture (llama, mistral, qwen2) decides which projections carry biases and
// which layers attend through a sliding window (LlamaConfig::attention_window); training, the loss
// and KV-cache decoding all apply the same window.
//
// The model computes in the dtype and on the device of its weights: f32 on the CPU (f64 for
// gradient checks), bf16 on the GPU (LlamaWeights::converted(DType::bf16).to_device(Device::cuda)).
// Token ids and labels are always host tensors; the model copies them where it computes. An
// adapter may be kept in another dtype than the model's (fp32 master weights beside bf16 GPU
// weights): each call then computes with a copy in the model's dtype, and LoRA gradients may be
// f32 on the GPU. Full-parameter training runs on the CPU only. The base weights are frozen: a training step produces
// gradients for the LoRA matrices only, unless the caller also asks for base-weight gradients (full-parameter
// training).
//
// Loss convention (DESIGN.md): the loss of a step is the mean over every label token of the whole
// global batch. A micro-batch therefore returns the *sum* of its token losses and its token count,
// and takes grad_scale = 1 / (label tokens of the global batch), so that gradients accumulated over
// micro-batches and ranks add up to the gradient of that mean.
#pragma once

#include <vector>

#include "engine/llama_weights.h"
#include "engine/lora.h"

namespace fe {

struct ModelOptions {
  // Keep only each layer's input during the forward and recompute the rest in the backward.
  bool recompute_activations = false;
  // Rows of logits materialised at once in the loss (bounds memory at rows × vocab).
  int64_t logits_chunk_rows = 1024;
};

struct LossSum {
  double sum = 0;      // Σ token losses
  int64_t tokens = 0;  // label tokens counted
  double mean() const { return tokens ? sum / tokens : 0.0; }
};

// Label tokens after HF's shift (labels[t+1] is the target of position t) that are not -100.
int64_t count_label_tokens(const View& labels);

// Keys and values of the tokens seen so far, per layer, for decoding one sequence (all of them, also
// in sliding layers, which read only their window's).
struct KvCache {
  int64_t length = 0;                // tokens cached
  int64_t capacity = 0;
  std::vector<Tensor> keys, values;  // per layer [capacity, Hkv, hd], after RoPE
};

class LlamaModel {
 public:
  LlamaModel(const LlamaWeights& weights, ModelOptions options = {});

  const LlamaConfig& config() const { return weights_.config; }
  DType dtype() const { return weights_.dtype(); }
  Device device() const { return weights_.device(); }

  // input_ids: i32 [B, T]; returns logits [B, T, V] on the model's device. lora may be null (the
  // base model).
  Tensor logits(const View& input_ids, const LoraAdapter* lora) const;
  // Loss of the batch (HF shift, -100 ignored) without gradients.
  LossSum loss(const View& input_ids, const View& labels, const LoraAdapter* lora) const;
  KvCache new_kv_cache(int64_t capacity) const;
  // Feeds ids (i32 [1, n]) at positions cache.length, … and appends their keys and values to the
  // cache; returns the logits of the last of them, [V], on the model's device.
  Tensor decode(const View& ids, KvCache& cache, const LoraAdapter* lora) const;

  // Forward and backward: adds grad_scale·∂(Σ token losses)/∂θ into lora_grads and, when given,
  // weight_grads (full-parameter training; lora and lora_grads may then be null). Returns the
  // micro-batch's loss sum and token count.
  LossSum forward_backward(const View& input_ids, const View& labels, const LoraAdapter* lora,
                           LoraAdapter* lora_grads, double grad_scale,
                           LlamaWeights* weight_grads = nullptr) const;

  // DP-SGD, with the loss of sequence b weighted by example_weights[b] (one weight per row of
  // input_ids): the squared L2 norm of each sequence's LoRA gradient, computed from the backward
  // without materialising per-example gradients (ghost norms; no gradient is accumulated) ...
  std::vector<double> per_example_lora_sq_norms(const View& input_ids, const View& labels, const LoraAdapter* lora,
                                                const std::vector<double>& example_weights) const;
  // ... and the LoRA gradient of Σ_b example_weights[b]·(token losses of b), added to lora_grads.
  LossSum forward_backward_per_example(const View& input_ids, const View& labels, const LoraAdapter* lora,
                                       LoraAdapter* lora_grads, const std::vector<double>& example_weights) const;

 private:
  struct Activations;
  struct Grads;
  // What forward_layers keeps of each layer: everything (for the backward), only its input (to
  // recompute the rest in the backward), or nothing (inference).
  enum class LayerKeep { all, inputs, nothing };
  // Uninitialised storage on the model's device, in the model's dtype unless given.
  Tensor empty(Shape shape) const { return empty(shape, dtype()); }
  Tensor empty(Shape shape, DType dtype) const { return Tensor::empty(shape, dtype, device()); }
  // Row statistics kept for the backward (1/rms, the attention log-sum-exp): f32 on the GPU,
  // where bf16 would round what the backward rescales by; the model's dtype on the CPU.
  DType statistics_dtype() const { return device() == Device::cuda ? DType::f32 : dtype(); }
  // A copy of host data (token ids, positions, targets) where the model computes.
  Tensor on_device(const Tensor& host) const { return host.device() == device() ? host : host.to_device(device()); }
  void embed(const View& input_ids, Activations& acts) const;
  // Embedding, every layer and model.norm; acts.lora is the adapter the layers compute with.
  void forward_layers(const View& input_ids, const LoraAdapter* lora, Activations& acts, LayerKeep keep) const;
  void layer_forward(int64_t l, Activations& acts) const;
  void layer_backward(int64_t l, Activations& acts, Grads& grads) const;
  LossSum head(const View& labels, Activations& acts, Grads* grads, double grad_scale) const;
  // Forward and backward into grads; token losses weigh grad_scale unless grads has example weights.
  LossSum backward(const View& input_ids, const View& labels, const LoraAdapter* lora, Grads& grads,
                   double grad_scale) const;

  LlamaWeights weights_;
  ModelOptions options_;
  Tensor inv_freq_;  // f64 [hd/2] on the model's device
};

}  // namespace fe
