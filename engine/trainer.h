// engine/trainer.h — optimizer steps over global batches: gradient accumulation, global-norm
// clipping, AdamW or SGD, learning-rate schedules.
//
// A Trainer owns the gradient buffers and the optimizer state of one set of trainable tensors:
// the LoRA matrices of an adapter, or every base weight (full-parameter training, used to make
// small pretrained bases). It updates those tensors in place; the model must share their storage
// (build the LlamaModel from the same LlamaWeights).
//
// step(micro_batches) is one optimizer step over one global batch: the loss is the mean over all
// label tokens of all micro-batches (DESIGN.md), so splitting a batch into micro-batches changes
// nothing but memory use. Runs are deterministic: same inputs, same bits.
//
// Data parallelism: with a Communicator of R ranks, every rank builds a Trainer over identical
// tensors and passes step() its share of the global batch (rank_share in engine/dataset.h). The
// ranks sum their label-token counts, loss sums and gradients (one all-reduce per bucket of
// gradient tensors), so every rank applies the same update and the result equals one rank
// training on the whole batch, up to float rounding. DP-SGD noise is drawn once, on rank 0.
//
// Devices: the trainer keeps gradients and optimizer state where the trained tensors live. On the
// GPU the adapter holds fp32 master weights while the model computes in bf16 (engine/llama_model.h);
// clipping, noise and AdamW each run as one launch over every LoRA tensor.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "engine/communicator.h"
#include "engine/dataset.h"
#include "engine/llama_model.h"
#include "engine/safetensors.h"

namespace fe {

enum class OptimizerKind { adamw, sgd };
enum class LrSchedule { constant, linear, cosine };

// DP-SGD (sample-level DP): each sequence's gradient — of its mean token loss — is clipped to
// clip_norm (norms from ghost norms, never materialising per-example gradients), the clipped
// gradients are summed, N(0, (noise_multiplier·clip_norm)²) is added per element, and the sum is
// divided by the number of sequences in the global batch. LoRA training only.
struct DpSgdOptions {
  double clip_norm = 0;          // > 0 turns DP-SGD on
  double noise_multiplier = 0;   // σ
  uint64_t seed = 0;             // the noise stream; each step draws from derive_seed(seed, ·, step). A
                                 // caller that restarts trainers (a participant per round) must vary it.
  bool enabled() const { return clip_norm > 0; }
};

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::adamw;
  double lr = 1e-4;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;       // AdamW only (decoupled)
  LrSchedule schedule = LrSchedule::constant;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;         // where linear and cosine decay reach 0
  double max_grad_norm = 0.0;      // clip the global gradient norm to this; 0: no clipping
  DpSgdOptions dp_sgd;
};

// HF's schedules (get_{constant,linear,cosine}_schedule_with_warmup) at 0-based optimizer step s:
// lr·s/warmup during warmup, then constant, linear or half-cosine decay to 0 at total_steps.
double learning_rate(const OptimizerOptions& options, int64_t step);

struct StepStats {
  double loss = 0;        // mean over the global batch's label tokens
  int64_t tokens = 0;     // label tokens
  double grad_norm = 0;   // before clipping
  double lr = 0;
};

class Trainer {
 public:
  // `ranks`: the participant's data-parallel ranks (null: this process alone); it must outlive
  // the trainer.
  Trainer(const LlamaModel& model, LoraAdapter& adapter, const OptimizerOptions& options, Communicator* ranks = nullptr);
  Trainer(const LlamaModel& model, LlamaWeights& weights, const OptimizerOptions& options, Communicator* ranks = nullptr);

  // One optimizer step over this rank's micro-batches (all of the global batch with one rank);
  // stats are the global batch's. A global batch without label tokens changes nothing (tokens = 0).
  // A loss or gradient norm that is NaN or ±inf is an Error naming the step and the quantity,
  // thrown before the update; trained tensors the update made non-finite are one too (so a
  // diverged run stops instead of training and saving NaN).
  StepStats step(std::span<const Batch> micro_batches);
  // FedProx: from now on the objective gains (mu/2)·‖w − anchor‖² over the trained tensors,
  // whose gradient mu·(w − anchor) joins the loss gradient before clipping. anchor holds one
  // tensor per trained tensor, in named_tensors() order (the round's global parameters).
  void set_proximal_term(double mu, std::vector<Tensor> anchor);
  int64_t steps_done() const { return step_; }
  // What resuming needs besides the trained tensors: the optimizer steps done ("step", i64 [1])
  // and AdamW's moments ("exp_avg/NAME", "exp_avg_sq/NAME" for each trained tensor's NAME).
  NamedTensors optimizer_state() const;
  // Restores an optimizer_state() of the same trained tensors; an Error names a tensor that is
  // missing or has another shape.
  void load_optimizer_state(const NamedTensors& state);

 private:
  void track(const std::vector<std::pair<std::string, Tensor>>& params,
             const std::vector<std::pair<std::string, Tensor>>& grads);
  double clip_gradients();
  [[noreturn]] void fail_non_finite(const std::string& quantity, double value) const;
  // Sums the gradients over the ranks, bucket by bucket.
  void all_reduce_gradients();
  void update(double lr);
  void add_proximal_gradient();
  // This rank's share of the gradient of one global batch into grads_; returns its Σ of token
  // losses.
  double accumulate(std::span<const Batch> micro_batches, int64_t global_tokens);
  double accumulate_dp_sgd(std::span<const Batch> micro_batches);
  double all_reduce(double value) { return ranks_ ? ranks_->all_reduce_sum(value) : value; }
  bool is_root() const { return !ranks_ || ranks_->rank() == 0; }

  const LlamaModel& model_;
  LoraAdapter* adapter_ = nullptr;
  LoraAdapter adapter_grads_;
  LlamaWeights* weights_ = nullptr;
  LlamaWeights weight_grads_;
  OptimizerOptions options_;
  Communicator* ranks_ = nullptr;
  Tensor bucket_;  // all-reduce staging: gradients of consecutive tensors, packed
  std::vector<std::string> names_;  // of the trained tensors
  std::vector<Tensor> params_, grads_, first_moments_, second_moments_;
  std::vector<View> grad_views_;  // grads_ as the list the multi-tensor kernels take
  std::vector<View> param_views_;  // params_ likewise
  int64_t step_ = 0;
  double proximal_mu_ = 0;
  std::vector<Tensor> proximal_anchor_;
};

}  // namespace fe
