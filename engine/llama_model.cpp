#include "engine/llama_model.h"

#include <algorithm>

#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"

namespace fe {

// What one layer's backward reads. Without recomputation every field is kept from the forward;
// with it only x_in is, and the rest is rebuilt just before the layer's backward.
struct LayerCache {
  Tensor x_in;                     // [N, D] the layer's input
  Tensor h1, rstd1;                // input_layernorm output and its 1/rms
  Tensor q, k, v;                  // [N, H, hd], [N, Hkv, hd]; q and k after RoPE
  Tensor att, lse;                 // attention output [N, H·hd], log-sum-exp [B, H, T]
  Tensor x_mid;                    // x_in + o_proj(att)
  Tensor h2, rstd2;                // post_attention_layernorm output and its 1/rms
  Tensor gate, up, act;            // [N, F]; act = silu(gate) ⊙ up
  std::array<Tensor, kNumProj> xa; // x·Aᵀ of each LoRA projection

  void keep_only_input() {
    Tensor input = x_in;
    *this = {};
    x_in = input;
  }
};

struct LlamaModel::Activations {
  int64_t batch = 0, seq = 0, tokens = 0;
  int64_t first_position = 0;      // position of the first token (non-zero when decoding)
  KvCache* cache = nullptr;        // when decoding: keys and values of earlier tokens
  const LoraAdapter* lora = nullptr;  // the adapter in the model's dtype (or null)
  LoraAdapter lora_copy;              // that copy, when the caller's adapter has another dtype
  Tensor ids;                         // input_ids [N] where the model computes
  Tensor cos, sin;                 // RoPE tables [N, hd/2]
  std::vector<LayerCache> layers;
  Tensor x;                        // the residual stream between layers [N, D]
  Tensor final_hidden, final_rstd; // model.norm output and its 1/rms
};

struct LlamaModel::Grads {
  LoraAdapter* lora = nullptr;
  LlamaWeights* weights = nullptr;
  Tensor dresid;                   // ∂L/∂(residual stream) at the current depth [N, D]
  std::vector<double> example_weights;  // when set: example b's token losses weigh this much
  Tensor example_sq_norms;              // when set (f64 [B], on the model's device): per-example ‖∇ LoRA‖²
};

namespace {

// The LoRA pair of a projection, or nullptr when there is none (no adapter, or not targeted).
const LoraPair* lora_pair(const LoraAdapter* lora, int64_t layer, Proj p) {
  if (lora == nullptr || layer >= static_cast<int64_t>(lora->layers.size())) return nullptr;
  const LoraPair& pair = lora->at(layer, p);
  return pair.defined() ? &pair : nullptr;
}

kernels::LoraBranch lora_branch(const LoraAdapter* lora, int64_t layer, Proj p) {
  if (lora_pair(lora, layer, p) == nullptr) return {};
  const LoraPair& pair = lora->at(layer, p);
  return {pair.a, pair.b, lora->config.scale()};
}

void require_token_matrix(const View& v, const char* what) {
  if (v.dtype != DType::i32 || v.shape.rank() != 2 || v.device != Device::cpu)
    throw Error(std::string("LlamaModel: ") + what + " must be an i32 [batch, seq] CPU tensor, got " + v.str());
}

void require_labels_like(const View& labels, const View& input_ids) {
  require_token_matrix(labels, "labels");
  if (!(labels.shape == input_ids.shape))
    throw Error("LlamaModel: labels " + labels.str() + " and input_ids " + input_ids.str() + " differ in shape");
}

void require_example_weights(const View& input_ids, const std::vector<double>& weights) {
  require_token_matrix(input_ids, "input_ids");
  if (static_cast<int64_t>(weights.size()) != input_ids.shape[0])
    throw Error("LlamaModel: " + std::to_string(weights.size()) + " example weights for " +
                std::to_string(input_ids.shape[0]) + " sequences");
}

// Targets after HF's shift: position t predicts labels[t+1]; the last position of each row
// predicts nothing.
Tensor shifted_targets(const View& labels) {
  const int64_t batch = labels.shape[0], seq = labels.shape[1];
  Tensor targets = Tensor::empty(Shape{batch * seq}, DType::i32);
  const int32_t* in = labels.as<int32_t>();
  int32_t* out = targets.as<int32_t>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq; ++t)
      out[b * seq + t] = t + 1 < seq ? in[b * seq + t + 1] : kernels::kIgnoreIndex;
  return targets;
}

}  // namespace

int64_t count_label_tokens(const View& labels) {
  require_token_matrix(labels, "labels");
  const Tensor targets = shifted_targets(labels);
  return std::count_if(targets.as<int32_t>(), targets.as<int32_t>() + targets.numel(),
                       [](int32_t t) { return t != kernels::kIgnoreIndex; });
}

LlamaModel::LlamaModel(const LlamaWeights& weights, ModelOptions options) : weights_(weights), options_(options) {
  if (options_.logits_chunk_rows <= 0) throw Error("LlamaModel: logits_chunk_rows must be positive");
  std::vector<double> inv_freq = weights.config.rope_inv_freq();
  inv_freq_ = empty(Shape{static_cast<int64_t>(inv_freq.size())}, DType::f64);
  kernels::copy(inv_freq_, View{inv_freq.data(), DType::f64, inv_freq_.shape(), Device::cpu});
}

void LlamaModel::embed(const View& input_ids, Activations& acts) const {
  require_token_matrix(input_ids, "input_ids");
  const LlamaConfig& c = config();
  acts.batch = input_ids.shape[0];
  acts.seq = input_ids.shape[1];
  acts.tokens = acts.batch * acts.seq;
  const Shape row_shape{acts.tokens, c.hidden_size};
  acts.x = empty(row_shape);
  Tensor ids = Tensor::empty(Shape{acts.tokens}, DType::i32);
  kernels::copy(ids, input_ids);
  acts.ids = on_device(ids);
  kernels::embedding_forward(acts.x, acts.ids, weights_.embed_tokens);

  Tensor positions = Tensor::empty(Shape{acts.tokens}, DType::i32);
  for (int64_t n = 0; n < acts.tokens; ++n) positions.as<int32_t>()[n] = static_cast<int32_t>(acts.first_position + n % acts.seq);
  acts.cos = empty(Shape{acts.tokens, c.head_dim / 2});
  acts.sin = empty(Shape{acts.tokens, c.head_dim / 2});
  kernels::rope_tables(acts.cos, acts.sin, on_device(positions), inv_freq_);
  acts.layers.assign(c.num_hidden_layers, {});
}

void LlamaModel::layer_forward(int64_t l, Activations& acts) const {
  const LlamaConfig& c = config();
  const LlamaLayerWeights& w = weights_.layers[l];
  const int64_t n = acts.tokens;
  LayerCache& cache = acts.layers[l];
  auto project = [&](Proj p, const Tensor& x, const Tensor& y) {
    const kernels::LoraBranch branch = lora_branch(acts.lora, l, p);
    Tensor& xa = cache.xa[static_cast<int>(p)];
    xa = branch.a.empty() ? Tensor() : empty(Shape{n, branch.a.shape[0]});
    kernels::linear_forward(y, xa, x, w[p].weight, w[p].bias, branch);
  };
  auto new_rows = [&](int64_t cols) { return empty(Shape{n, cols}); };

  cache.x_in = acts.x;
  cache.h1 = new_rows(c.hidden_size);
  cache.rstd1 = empty(Shape{n}, statistics_dtype());
  kernels::rmsnorm_forward(cache.h1, cache.rstd1, cache.x_in, w.input_layernorm, c.rms_norm_eps);

  cache.q = empty(Shape{n, c.num_attention_heads, c.head_dim});
  cache.k = empty(Shape{n, c.num_key_value_heads, c.head_dim});
  cache.v = empty(Shape{n, c.num_key_value_heads, c.head_dim});
  project(Proj::q, cache.h1, cache.q);
  project(Proj::k, cache.h1, cache.k);
  project(Proj::v, cache.h1, cache.v);
  kernels::rope_apply(cache.q, acts.cos, acts.sin, false);
  kernels::rope_apply(cache.k, acts.cos, acts.sin, false);

  const Shape q4{acts.batch, acts.seq, c.num_attention_heads, c.head_dim};
  Tensor keys = cache.k, values = cache.v;
  if (acts.cache) {  // attend over the cached tokens plus these (the kernel applies the window)
    KvCache& kv = *acts.cache;
    const int64_t end = acts.first_position + n;
    kernels::convert(kv.keys[l].rows(acts.first_position, end), cache.k);
    kernels::convert(kv.values[l].rows(acts.first_position, end), cache.v);
    keys = kv.keys[l].rows(0, end);
    values = kv.values[l].rows(0, end);
  }
  const Shape kv4{acts.batch, keys.shape()[0] / acts.batch, c.num_key_value_heads, c.head_dim};
  cache.att = new_rows(c.q_dim());
  cache.lse = empty(Shape{acts.batch, c.num_attention_heads, acts.seq}, statistics_dtype());
  kernels::attention_forward(cache.att.view().reshaped(q4), cache.lse, cache.q.view().reshaped(q4),
                             keys.view().reshaped(kv4), values.view().reshaped(kv4), c.attention_window(l));

  cache.x_mid = new_rows(c.hidden_size);
  project(Proj::o, cache.att, cache.x_mid);
  kernels::axpy(cache.x_mid, cache.x_in, 1.0);

  cache.h2 = new_rows(c.hidden_size);
  cache.rstd2 = empty(Shape{n}, statistics_dtype());
  kernels::rmsnorm_forward(cache.h2, cache.rstd2, cache.x_mid, w.post_attention_layernorm, c.rms_norm_eps);
  cache.gate = new_rows(c.intermediate_size);
  cache.up = new_rows(c.intermediate_size);
  project(Proj::gate, cache.h2, cache.gate);
  project(Proj::up, cache.h2, cache.up);
  cache.act = new_rows(c.intermediate_size);
  kernels::swiglu_forward(cache.act, cache.gate, cache.up);

  acts.x = new_rows(c.hidden_size);
  project(Proj::down, cache.act, acts.x);
  kernels::axpy(acts.x, cache.x_mid, 1.0);
}

void LlamaModel::layer_backward(int64_t l, Activations& acts, Grads& grads) const {
  const LlamaConfig& c = config();
  const LlamaLayerWeights& w = weights_.layers[l];
  const LayerCache& cache = acts.layers[l];
  const int64_t n = acts.tokens;
  auto new_rows = [&](int64_t cols) { return empty(Shape{n, cols}); };
  // dy → dx (overwritten or accumulated), plus this projection's LoRA and weight grads.
  auto project_back = [&](Proj p, const Tensor& dy, const Tensor& x, const Tensor& dx, bool accumulate) {
    kernels::LinearGrads g;
    g.dx = dx;
    g.accumulate_dx = accumulate;
    if (const LoraPair* grad = lora_pair(grads.lora, l, p)) {
      g.da = grad->a;
      g.db = grad->b;
    }
    if (grads.weights) {
      const Linear& gw = grads.weights->layers[l][p];
      g.dw = gw.weight;
      if (gw.bias.defined()) g.dbias = gw.bias;
    }
    const kernels::LoraBranch branch = lora_branch(acts.lora, l, p);
    kernels::linear_backward(g, dy, x, cache.xa[static_cast<int>(p)], w[p].weight, branch);
    if (grads.example_sq_norms.defined() && !branch.a.empty())
      kernels::lora_per_example_sq_norms(grads.example_sq_norms, dy, x, cache.xa[static_cast<int>(p)], branch);
  };
  auto norm_grad = [&](const Tensor& norm) { return grads.weights ? norm.view() : View{}; };
  const LlamaLayerWeights* gw = grads.weights ? &grads.weights->layers[l] : nullptr;

  // MLP: x_out = x_mid + down(silu(gate(h2)) ⊙ up(h2)); dresid holds ∂L/∂x_out = ∂L/∂(down out).
  Tensor dact = new_rows(c.intermediate_size);
  project_back(Proj::down, grads.dresid, cache.act, dact, false);
  Tensor dgate = new_rows(c.intermediate_size), dup = new_rows(c.intermediate_size);
  kernels::swiglu_backward(dgate, dup, dact, cache.gate, cache.up);
  Tensor dh = new_rows(c.hidden_size);
  project_back(Proj::gate, dgate, cache.h2, dh, false);
  project_back(Proj::up, dup, cache.h2, dh, true);
  kernels::rmsnorm_backward(grads.dresid, gw ? norm_grad(gw->post_attention_layernorm) : View{}, dh,
                            cache.x_mid, w.post_attention_layernorm, cache.rstd2, true);

  // Attention: x_mid = x_in + o(attn(rope(q(h1)), rope(k(h1)), v(h1))).
  Tensor datt = new_rows(c.q_dim());
  project_back(Proj::o, grads.dresid, cache.att, datt, false);
  const Shape q4{acts.batch, acts.seq, c.num_attention_heads, c.head_dim};
  const Shape kv4{acts.batch, acts.seq, c.num_key_value_heads, c.head_dim};
  Tensor dq = empty(cache.q.shape());
  Tensor dk = empty(cache.k.shape());
  Tensor dv = empty(cache.v.shape());
  kernels::attention_backward(dq.view().reshaped(q4), dk.view().reshaped(kv4), dv.view().reshaped(kv4),
                              datt.view().reshaped(q4), cache.q.view().reshaped(q4), cache.k.view().reshaped(kv4),
                              cache.v.view().reshaped(kv4), cache.att.view().reshaped(q4), cache.lse,
                              c.attention_window(l));
  kernels::rope_apply(dq, acts.cos, acts.sin, true);
  kernels::rope_apply(dk, acts.cos, acts.sin, true);
  project_back(Proj::q, dq, cache.h1, dh, false);
  project_back(Proj::k, dk, cache.h1, dh, true);
  project_back(Proj::v, dv, cache.h1, dh, true);
  kernels::rmsnorm_backward(grads.dresid, gw ? norm_grad(gw->input_layernorm) : View{}, dh, cache.x_in,
                            w.input_layernorm, cache.rstd1, true);
}

// model.norm, lm_head and the loss, in chunks of rows so that at most chunk × vocab logits exist.
// With grads, also starts the backward: dresid = ∂L/∂(last layer's output).
LossSum LlamaModel::head(const View& labels, Activations& acts, Grads* grads, double grad_scale) const {
  const LlamaConfig& c = config();
  const Tensor targets = on_device(shifted_targets(labels));
  Tensor dhidden = grads ? empty(acts.x.shape()) : Tensor();
  LossSum total;
  for (int64_t r0 = 0; r0 < acts.tokens; r0 += options_.logits_chunk_rows) {
    const int64_t r1 = std::min(acts.tokens, r0 + options_.logits_chunk_rows);
    const Tensor hidden = acts.final_hidden.rows(r0, r1);
    Tensor logits = empty(Shape{r1 - r0, c.vocab_size});
    kernels::gemm(logits, hidden, false, weights_.lm_head, true, 1.0, 0.0);
    const bool per_example = grads && !grads->example_weights.empty();
    const auto ce = kernels::cross_entropy(grads ? logits.view() : View{}, logits, targets.rows(r0, r1),
                                           per_example ? 1.0 : grad_scale);
    total.sum += ce.loss_sum;
    total.tokens += ce.count;
    if (!grads) continue;
    if (per_example)  // rows [b·T, (b+1)·T) belong to example b
      for (int64_t row = r0; row < r1;) {
        const int64_t example = row / acts.seq, end = std::min(r1, (example + 1) * acts.seq);
        kernels::scale(logits.rows(row - r0, end - r0), grads->example_weights[example]);
        row = end;
      }
    kernels::gemm(dhidden.rows(r0, r1), logits, false, weights_.lm_head, false, 1.0, 0.0);
    if (grads->weights) kernels::gemm(grads->weights->lm_head, logits, true, hidden, false, 1.0, 1.0);
  }
  if (grads) {
    grads->dresid = empty(acts.x.shape());
    kernels::rmsnorm_backward(grads->dresid, grads->weights ? grads->weights->norm.view() : View{}, dhidden,
                              acts.x, weights_.norm, acts.final_rstd, false);
  }
  return total;
}

void LlamaModel::forward_layers(const View& input_ids, const LoraAdapter* lora, Activations& acts,
                                LayerKeep keep) const {
  if (lora && lora->device() != device())
    throw Error(std::string("LlamaModel: the adapter is on the ") + device_name(lora->device()) + ", the model on the " +
                device_name(device()));
  if (lora && lora->dtype() != dtype()) acts.lora_copy = lora->converted(dtype());
  acts.lora = lora && lora->dtype() != dtype() ? &acts.lora_copy : lora;
  embed(input_ids, acts);
  for (int64_t l = 0; l < config().num_hidden_layers; ++l) {
    layer_forward(l, acts);
    if (keep == LayerKeep::nothing) acts.layers[l] = {};
    if (keep == LayerKeep::inputs) acts.layers[l].keep_only_input();
  }
  acts.final_hidden = empty(acts.x.shape());
  acts.final_rstd = empty(Shape{acts.tokens}, statistics_dtype());
  kernels::rmsnorm_forward(acts.final_hidden, acts.final_rstd, acts.x, weights_.norm, config().rms_norm_eps);
}

Tensor LlamaModel::logits(const View& input_ids, const LoraAdapter* lora) const {
  Activations acts;
  forward_layers(input_ids, lora, acts, LayerKeep::nothing);
  Tensor out = empty(Shape{acts.tokens, config().vocab_size});
  kernels::gemm(out, acts.final_hidden, false, weights_.lm_head, true, 1.0, 0.0);
  return out.reshaped(Shape{acts.batch, acts.seq, config().vocab_size});
}

KvCache LlamaModel::new_kv_cache(int64_t capacity) const {
  const LlamaConfig& c = config();
  KvCache cache;
  cache.capacity = capacity;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    cache.keys.push_back(empty(Shape{capacity, c.num_key_value_heads, c.head_dim}));
    cache.values.push_back(empty(Shape{capacity, c.num_key_value_heads, c.head_dim}));
  }
  return cache;
}

Tensor LlamaModel::decode(const View& ids, KvCache& cache, const LoraAdapter* lora) const {
  require_token_matrix(ids, "decode ids");
  const int64_t n = ids.shape[1];
  if (ids.shape[0] != 1 || n == 0) throw Error("LlamaModel::decode: expects ids [1, n] with n ≥ 1, got " + ids.str());
  if (cache.length + n > cache.capacity)
    throw Error("LlamaModel::decode: " + std::to_string(cache.length + n) + " tokens exceed the KV cache capacity " +
                std::to_string(cache.capacity));
  Activations acts;
  acts.first_position = cache.length;
  acts.cache = &cache;
  forward_layers(ids, lora, acts, LayerKeep::nothing);
  cache.length += n;
  Tensor logits = empty(Shape{1, config().vocab_size});
  kernels::gemm(logits, acts.final_hidden.rows(n - 1, n), false, weights_.lm_head, true, 1.0, 0.0);
  return logits.reshaped(Shape{config().vocab_size});
}

LossSum LlamaModel::loss(const View& input_ids, const View& labels, const LoraAdapter* lora) const {
  require_labels_like(labels, input_ids);
  Activations acts;
  forward_layers(input_ids, lora, acts, LayerKeep::nothing);
  return head(labels, acts, nullptr, 0.0);
}

LossSum LlamaModel::forward_backward(const View& input_ids, const View& labels, const LoraAdapter* lora,
                                     LoraAdapter* lora_grads, double grad_scale, LlamaWeights* weight_grads) const {
  if (weight_grads && device() != Device::cpu)
    throw Error("LlamaModel: full-parameter training runs on the CPU only (this model is on the GPU)");
  Grads grads{lora_grads, weight_grads, {}, {}, {}};
  return backward(input_ids, labels, lora, grads, grad_scale);
}

LossSum LlamaModel::forward_backward_per_example(const View& input_ids, const View& labels, const LoraAdapter* lora,
                                                 LoraAdapter* lora_grads, const std::vector<double>& example_weights) const {
  require_example_weights(input_ids, example_weights);
  Grads grads{lora_grads, nullptr, {}, example_weights, {}};
  return backward(input_ids, labels, lora, grads, 0.0);
}

std::vector<double> LlamaModel::per_example_lora_sq_norms(const View& input_ids, const View& labels,
                                                          const LoraAdapter* lora,
                                                          const std::vector<double>& example_weights) const {
  require_example_weights(input_ids, example_weights);
  // Summed where the model computes: on the GPU each projection's norms add without a wait.
  Grads grads{nullptr, nullptr, {}, example_weights,
              Tensor::zeros(Shape{static_cast<int64_t>(example_weights.size())}, DType::f64, device())};
  backward(input_ids, labels, lora, grads, 0.0);
  const Tensor host_norms = grads.example_sq_norms.to_device(Device::cpu);
  const double* norms = host_norms.as<double>();
  return std::vector<double>(norms, norms + example_weights.size());
}

LossSum LlamaModel::backward(const View& input_ids, const View& labels, const LoraAdapter* lora, Grads& grads,
                             double grad_scale) const {
  require_labels_like(labels, input_ids);
  Activations acts;
  forward_layers(input_ids, lora, acts, options_.recompute_activations ? LayerKeep::inputs : LayerKeep::all);
  const LossSum result = head(labels, acts, &grads, grad_scale);
  for (int64_t l = config().num_hidden_layers - 1; l >= 0; --l) {
    if (options_.recompute_activations) {
      acts.x = acts.layers[l].x_in;
      layer_forward(l, acts);
    }
    layer_backward(l, acts, grads);
    acts.layers[l] = {};  // free this layer's activations as soon as they are used
  }
  if (grads.weights)
    kernels::embedding_backward(grads.weights->embed_tokens, acts.ids, grads.dresid);
  return result;
}

}  // namespace fe
