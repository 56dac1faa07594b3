// engine/train_config.h — the settings of one local training run, read from YAML.
//
// `fedengine train cfg.yaml` reads the whole file through read_train_config(); the federation
// reuses the same sections for each participant (with per-participant overrides). Sections:
//   model, tokenizer              paths (relative to the YAML file); tokenizer: null for none
//   data:    train, eval, format, max_seq_len, train_on_prompt, chat_template, add_bos, add_eos,
//            bucket_by_length, multiple_choice_prompt (plain | chat)
//   adapter: method (lora|full), rank, alpha, rslora, targets, init
//   train:   steps, micro_batch_size, grad_accum_steps, optimizer, lr, beta1, beta2, eps,
//            weight_decay, schedule, warmup_steps, max_grad_norm, seed, recompute_activations,
//            device (cpu | cuda), dp_sgd: {clip_norm, noise_multiplier, delta} (sample-level DP,
//            engine/trainer.h)
//   eval:    every, batch_size, exact_match, max_examples, max_new_tokens, temperature, top_p,
//            normalize (strip, collapse_whitespace, lowercase, remove_punctuation); for
//            multiple-choice eval files: few_shot, few_shot_file, generate_answers, answer_pattern
//   output:  dir, log_every, save_every
// configs/train.yaml documents every key with its default. Ranges the model's shape sets are checked
// against MODEL/config.json where it exists, so the error names the YAML line: data.max_seq_len and
// eval.max_new_tokens at most max_position_embeddings, adapter.rank at most the smallest dimension
// of the targeted projections; and micro_batch_size × grad_accum_steps at most 2^20 sequences.
#pragma once

#include <string>

#include "engine/dataset.h"
#include "engine/evaluate.h"
#include "engine/lora.h"
#include "engine/trainer.h"
#include "engine/yaml_config.h"

namespace fe {

struct TrainConfig {
  std::string model_dir;
  // tokenizer.json, tokenizer.model or a directory holding one; empty: no tokenizer (pre-tokenized
  // data only), what `tokenizer: null` or a model directory without a tokenizer gives.
  std::string tokenizer_path;
  std::string train_file, eval_file;  // eval_file may be empty
  DataOptions data;
  bool bucket_by_length = true;

  bool full_parameter = false;     // adapter.method: full
  LoraConfig lora;
  std::string init_adapter;        // a PEFT adapter to start from; empty: PEFT initialisation

  int64_t steps = 100;
  int64_t micro_batch_size = 8;
  int64_t grad_accum_steps = 1;
  OptimizerOptions optimizer;
  uint64_t seed = 0;
  bool recompute_activations = false;
  Device device = Device::cpu;     // cuda: bf16 model in GPU memory, fp32 adapter (LoRA only)
  double dp_sgd_delta = 1e-5;      // the δ of the ε reported with DP-SGD

  int64_t eval_every = 0;          // steps; 0: before and after training only
  EvalOptions eval;
  FewShotOptions eval_few_shot;  // k-shot prompts of a multiple-choice data.eval (seeded by train.seed)

  std::string output_dir;
  int64_t log_every = 10;
  int64_t save_every = 0;          // steps; 0: only at the end
};

// Reads every section; the caller checks root.check_all_keys_used() after reading what else it
// needs. `for_training` is false for commands that only evaluate and for the federation's
// shared settings: then data.train and output.dir are optional and data files are not checked
// for existence here (whoever opens them reports a missing one).
TrainConfig read_train_config(const ConfigNode& root, bool for_training = true);

}  // namespace fe
