// engine/train_run.h — one participant's local training run, end to end, as `fedengine train`
// does it: load the model, tokenizer, data and starting adapter; train with progress on a stream
// and metrics in <output>/metrics.jsonl (one JSON object per step or evaluation, flushed as it is
// written); evaluate before, every eval_every steps and at the end; save checkpoints and the
// result (<output>/adapter in PEFT format, or <output>/model for full-parameter training).
#pragma once

#include <atomic>
#include <iosfwd>
#include <memory>
#include <nlohmann/json.hpp>

#include "engine/train_config.h"

namespace fe {

// What a run (or an evaluation) loads once: the base model and everything beside it.
struct LoadedRun {
  LlamaWeights weights;  // where config.device computes (compute_weights)
  std::unique_ptr<Tokenizer> tokenizer;  // null without one (pre-tokenized data)
  std::vector<Example> train, eval;
  std::vector<int32_t> stop_ids;  // what ends a generated answer (engine/generation_config.h)
  int32_t pad_id() const { return tokenizer ? tokenizer->pad_id() : -1; }
};
LoadedRun load_run(const TrainConfig& config, bool load_train_data);

// The base weights in the form the model computes with on `device`: as given (f32) on the CPU,
// converted to bf16 and copied into GPU memory on the GPU. An Error when the GPU cannot be used
// (a build without CUDA, no visible device), naming `setting`, what asked for the GPU.
LlamaWeights compute_weights(const LlamaWeights& host, Device device, const std::string& setting = "train.device");

struct TrainSummary {
  EvalResult before, after;  // on the eval set (zeros without one)
  double final_train_loss = 0;
  int64_t steps = 0;
  bool stopped = false;      // by the stop flag, after a checkpoint of `steps`
};

// With `resume`, continues from the newest OUTPUT/checkpoint-N (written every output.save_every
// steps with the optimizer's state): the trained tensors, AdamW's moments, the step, the data
// order and the learning-rate schedule carry on, so the result is the uninterrupted run's (bit
// for bit on the CPU); metrics.jsonl keeps its lines up to step N. An Error when there is no
// checkpoint, or when the config changes what a step means (steps, batch sizes, seed, data,
// adapter). A run without `resume` removes the checkpoints an earlier run left in OUTPUT.
// When *stop becomes true (a signal), the run finishes its step, writes checkpoint-N and returns
// with `stopped` set.
TrainSummary run_training(const TrainConfig& config, std::ostream& progress, bool resume = false,
                          const std::atomic<bool>* stop = nullptr);

// Whether an entry of the output directory named `name` is one that run_training writes there
// (metrics.jsonl, adapter/, model/, checkpoint-N/, or one of these while it is being written): what
// tells an earlier run's output directory from one that holds anything else.
bool is_training_output(std::string name);

// One line: "loss 0.123 | ppl 1.13 | exact match 87/100 (87.0%)", and for multiple-choice questions
// "| multiple choice acc 3/5 (60.0%) | acc_norm 4/5 (80.0%)" (with "| answer letter 2/5 (40.0%)"
// when answers were generated).
std::string describe(const EvalResult& result);
// One line per subject ("  astronomy: acc 2/3 (66.7%) | acc_norm ..."), "" when no question has one.
std::string describe_subjects(const EvalResult& result);
// The multiple-choice figures: {"questions", "acc", "acc_norm", "generated"?, "generated_acc"?,
// "subjects": {subject: the same figures}}; an empty object when no question was scored.
nlohmann::json multiple_choice_json(const EvalResult& result);
// The same with every key prefixed "eval_mc_", for metrics.jsonl beside eval_loss.
nlohmann::json multiple_choice_metrics(const EvalResult& result);

}  // namespace fe
