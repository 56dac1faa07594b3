#include "engine/trainer.h"

#include <cmath>
#include <numbers>

#include "engine/rng.h"
#include "kernels/adamw.h"
#include "kernels/clip.h"
#include "kernels/elementwise.h"

namespace fe {

double learning_rate(const OptimizerOptions& o, int64_t step) {
  if (step < o.warmup_steps) return o.lr * static_cast<double>(step) / static_cast<double>(o.warmup_steps);
  if (o.schedule == LrSchedule::constant) return o.lr;
  const double decay_steps = std::max<double>(1.0, static_cast<double>(o.total_steps - o.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - o.warmup_steps) / decay_steps);
  if (o.schedule == LrSchedule::linear) return o.lr * (1.0 - progress);
  return o.lr * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

Trainer::Trainer(const LlamaModel& model, LoraAdapter& adapter, const OptimizerOptions& options, Communicator* ranks)
    : model_(model), adapter_(&adapter), adapter_grads_(adapter.zeros_like()), options_(options), ranks_(ranks) {
  track(adapter.named_tensors(), adapter_grads_.named_tensors());
}

Trainer::Trainer(const LlamaModel& model, LlamaWeights& weights, const OptimizerOptions& options, Communicator* ranks)
    : model_(model), weights_(&weights), weight_grads_(weights.zeros_like()), options_(options), ranks_(ranks) {
  track(weights.named_tensors(), weight_grads_.named_tensors());
}

void Trainer::track(const std::vector<std::pair<std::string, Tensor>>& params,
                    const std::vector<std::pair<std::string, Tensor>>& grads) {
  if (params.empty()) throw Error("Trainer: nothing to train (the adapter targets no projection)");
  if (options_.lr < 0 || options_.max_grad_norm < 0 || options_.warmup_steps < 0)
    throw Error("Trainer: lr, max_grad_norm and warmup_steps must not be negative");
  if (options_.dp_sgd.enabled() && !adapter_) throw Error("Trainer: DP-SGD trains LoRA adapters only");
  if (options_.dp_sgd.noise_multiplier < 0) throw Error("Trainer: the DP-SGD noise multiplier must not be negative");
  if (ranks_ && ranks_->size() > 1 && grads.front().second.dtype() != DType::f32 && grads.front().second.dtype() != DType::f64)
    throw Error(std::string("Trainer: data-parallel ranks sum f32 or f64 gradients; these are ") +
                dtype_name(grads.front().second.dtype()) + " (keep the adapter's master weights in f32)");
  for (size_t i = 0; i < params.size(); ++i) {
    names_.push_back(params[i].first);
    params_.push_back(params[i].second);
    grads_.push_back(grads[i].second);
    grad_views_.push_back(grads[i].second);
    param_views_.push_back(params[i].second);
    if (options_.kind == OptimizerKind::adamw) {
      const Tensor& p = params[i].second;
      first_moments_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
      second_moments_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    }
  }
}

void Trainer::set_proximal_term(double mu, std::vector<Tensor> anchor) {
  if (mu < 0) throw Error("Trainer: the proximal mu must not be negative, got " + std::to_string(mu));
  if (anchor.size() != params_.size())
    throw Error("Trainer: the proximal anchor has " + std::to_string(anchor.size()) + " tensors, the trainer trains " +
                std::to_string(params_.size()));
  for (size_t i = 0; i < anchor.size(); ++i)
    if (!(anchor[i].shape() == params_[i].shape()) || anchor[i].device() != params_[i].device())
      throw Error("Trainer: proximal anchor tensor " + std::to_string(i) + " is " + anchor[i].view().str() +
                  ", the parameter " + params_[i].view().str());
  proximal_mu_ = mu;
  proximal_anchor_ = std::move(anchor);
}

void Trainer::add_proximal_gradient() {
  if (proximal_mu_ == 0) return;
  for (size_t i = 0; i < params_.size(); ++i) {
    kernels::axpy(grads_[i], params_[i], proximal_mu_);
    kernels::axpy(grads_[i], proximal_anchor_[i], -proximal_mu_);
  }
}

NamedTensors Trainer::optimizer_state() const {
  Tensor step = Tensor::empty(Shape{1}, DType::i64);
  step.as<int64_t>()[0] = step_;
  NamedTensors state{{"step", step}};
  for (size_t i = 0; i < first_moments_.size(); ++i) {
    state.emplace_back("exp_avg/" + names_[i], first_moments_[i]);
    state.emplace_back("exp_avg_sq/" + names_[i], second_moments_[i]);
  }
  return state;
}

void Trainer::load_optimizer_state(const NamedTensors& state) {
  const NamedTensors into = optimizer_state();  // the moments themselves, and a new step tensor
  copy_named_tensors(into, state, "Trainer: the optimizer state");
  step_ = into.front().second.as<int64_t>()[0];
}

double Trainer::clip_gradients() {
  const double norm = kernels::global_norm(grad_views_);
  if (options_.max_grad_norm > 0 && norm > options_.max_grad_norm)
    kernels::scale_all(grad_views_, options_.max_grad_norm / norm);
  return norm;
}

void Trainer::update(double lr) {
  if (options_.kind == OptimizerKind::sgd) {
    for (size_t i = 0; i < params_.size(); ++i) kernels::axpy(params_[i], grads_[i], -lr);
    return;
  }
  const auto views = [](const std::vector<Tensor>& tensors) {
    return std::vector<View>(tensors.begin(), tensors.end());
  };
  const kernels::AdamWHyper hyper{lr, options_.beta1, options_.beta2, options_.eps, options_.weight_decay};
  kernels::adamw_step_all(views(params_), grad_views_, views(first_moments_), views(second_moments_), hyper, step_ + 1);
}

void Trainer::all_reduce_gradients() {
  if (!ranks_ || ranks_->size() == 1) return;
  // Large enough that LoRA gradients travel in one message, small enough that full-parameter
  // training does not double its gradient memory.
  constexpr int64_t kBucketElements = int64_t{1} << 24;
  if (!bucket_.defined()) {
    int64_t total = 0, largest = 0;
    for (const Tensor& g : grads_) {
      total += g.numel();
      largest = std::max(largest, g.numel());
    }
    bucket_ = Tensor::empty({std::min(total, std::max(kBucketElements, largest))}, grads_.front().dtype(),
                            grads_.front().device());
  }
  auto slot = [&](int64_t offset, const Tensor& g) { return bucket_.rows(offset, offset + g.numel()).view(); };
  for (size_t first = 0; first < grads_.size();) {
    size_t last = first;
    int64_t used = 0;
    for (; last < grads_.size() && used + grads_[last].numel() <= bucket_.numel(); ++last) {
      kernels::copy(slot(used, grads_[last]), grads_[last]);
      used += grads_[last].numel();
    }
    ranks_->all_reduce_sum(bucket_.rows(0, used).view());
    used = 0;
    for (size_t i = first; i < last; ++i) {
      kernels::copy(grads_[i], slot(used, grads_[i]));
      used += grads_[i].numel();
    }
    first = last;
  }
}

double Trainer::accumulate(std::span<const Batch> micro_batches, int64_t global_tokens) {
  double loss_sum = 0;
  const double grad_scale = 1.0 / static_cast<double>(global_tokens);
  for (const Batch& b : micro_batches)
    if (b.input_ids.shape()[0] > 0)
    loss_sum += model_.forward_backward(b.input_ids, b.labels, adapter_, adapter_ ? &adapter_grads_ : nullptr,
                                        grad_scale, weights_ ? &weight_grads_ : nullptr).sum;
  return loss_sum;
}

double Trainer::accumulate_dp_sgd(std::span<const Batch> micro_batches) {
  const DpSgdOptions& dp = options_.dp_sgd;
  double loss_sum = 0;
  int64_t sequences = 0;
  for (const Batch& b : micro_batches) {
    const int64_t rows = b.input_ids.shape()[0];
    if (rows == 0) continue;
    std::vector<double> weights(rows);  // 1 / (label tokens of the sequence): its mean token loss
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t tokens = count_label_tokens(b.labels.rows(r, r + 1));
      weights[r] = tokens ? 1.0 / static_cast<double>(tokens) : 0.0;
    }
    const std::vector<double> sq_norms = model_.per_example_lora_sq_norms(b.input_ids, b.labels, adapter_, weights);
    for (int64_t r = 0; r < rows; ++r) {
      const double norm = std::sqrt(sq_norms[r]);
      if (norm > dp.clip_norm) weights[r] *= dp.clip_norm / norm;
    }
    loss_sum += model_.forward_backward_per_example(b.input_ids, b.labels, adapter_, &adapter_grads_, weights).sum;
    sequences += rows;
  }
  if (is_root()) {  // the noise joins the sum once, whatever the number of ranks; the same on CPU and GPU
    const uint64_t seed = derive_seed(dp.seed, 0x6470736764ull /* "dpsgd" */, static_cast<uint64_t>(step_));
    uint64_t offset = 0;
    for (const Tensor& g : grads_) {
      kernels::add_gaussian_noise(g, dp.noise_multiplier * dp.clip_norm, seed, offset);
      offset += static_cast<uint64_t>(g.numel());
    }
  }
  all_reduce_gradients();
  const double global_sequences = all_reduce(static_cast<double>(sequences));
  kernels::scale_all(grad_views_, 1.0 / global_sequences);
  return loss_sum;
}

StepStats Trainer::step(std::span<const Batch> micro_batches) {
  StepStats stats;
  int64_t tokens = 0;
  for (const Batch& b : micro_batches) tokens += count_label_tokens(b.labels);
  stats.tokens = static_cast<int64_t>(all_reduce(static_cast<double>(tokens)));
  if (stats.tokens == 0) return stats;
  for (const Tensor& g : grads_) kernels::fill(g, 0.0);
  double loss_sum = 0;
  if (options_.dp_sgd.enabled()) {
    loss_sum = accumulate_dp_sgd(micro_batches);
  } else {
    loss_sum = accumulate(micro_batches, stats.tokens);
    all_reduce_gradients();
  }
  stats.loss = all_reduce(loss_sum) / static_cast<double>(stats.tokens);
  if (!std::isfinite(stats.loss)) fail_non_finite("the loss", stats.loss);
  add_proximal_gradient();
  stats.grad_norm = clip_gradients();
  if (!std::isfinite(stats.grad_norm)) fail_non_finite("the gradient norm", stats.grad_norm);
  stats.lr = learning_rate(options_, step_);
  update(stats.lr);
  if (const double norm = kernels::global_norm(param_views_); !std::isfinite(norm))
    fail_non_finite("the norm of the trained tensors after the update", norm);
  ++step_;
  return stats;
}

void Trainer::fail_non_finite(const std::string& quantity, double value) const {
  throw Error("training step " + std::to_string(step_ + 1) + ": " + quantity + " is " + value_text(value) + " (lr " +
              value_text(learning_rate(options_, step_)) +
              "); the run diverged or its inputs are not finite. Lower train.lr, set train.max_grad_norm, and check "
              "the base model and the starting adapter");
}

}  // namespace fe
