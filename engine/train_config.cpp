#include "engine/train_config.h"

#include <algorithm>
#include <filesystem>

#include "core/number_text.h"

namespace fe {
namespace {

// Sequences one optimizer step holds at once (micro_batch_size × grad_accum_steps): far beyond any
// useful global batch, and small enough that the step's micro-batches fit in memory.
constexpr int64_t kMaxSequencesPerStep = int64_t{1} << 20;

void read_data(const ConfigNode& data, bool for_training, TrainConfig& c) {
  c.train_file = for_training ? data.existing_file("train") : data.get_path("train");
  c.eval_file = !data.has("eval") ? "" : for_training ? data.existing_file("eval") : data.get_path("eval");
  c.data.format = parse_data_format(data.get_choice(
      "format", {"auto", "text", "prompt_completion", "alpaca", "chat", "tokenized", "multiple_choice"}, "auto"));
  c.data.max_seq_len = data.get<int64_t>("max_seq_len", c.data.max_seq_len, Bounds::at_least(2));
  c.data.train_on_prompt = data.get<bool>("train_on_prompt", c.data.train_on_prompt);
  c.data.chat_template = data.get_choice("chat_template", {"auto", "llama2", "chatml", "plain"}, c.data.chat_template);
  c.data.multiple_choice_prompt = data.get_choice("multiple_choice_prompt", {"plain", "chat"}, "plain") == "chat"
                                      ? MultipleChoicePrompt::chat
                                      : MultipleChoicePrompt::plain;
  c.data.add_bos = data.get_optional<bool>("add_bos");
  c.data.add_eos = data.get_optional<bool>("add_eos");
  c.bucket_by_length = data.get<bool>("bucket_by_length", c.bucket_by_length);
}

std::string targets_text(const LoraConfig& lora) {
  std::string text;
  for (Proj p : lora.targets) text += std::string(text.empty() ? "[" : ", ") + proj_name(p);
  return text + "]";
}

// Training continues adapter.init with its own rank, alpha, rsLoRA and targets: a setting here that
// says otherwise would be silently ignored, so it is refused, naming both values.
void require_agreement_with_init(const ConfigNode& adapter, const TrainConfig& c) {
  const LoraConfig init = LoraConfig::load_peft(c.init_adapter);
  const auto refuse = [&](const std::string& key, const std::string& here, const std::string& there,
                          const std::string& peft_key) {
    adapter.fail(key, here + ", but adapter.init " + c.init_adapter + " has " + peft_key + " " + there +
                          " (its adapter_config.json); training continues that adapter as it is: drop adapter." + key +
                          " or make it " + there);
  };
  if (adapter.has("rank") && c.lora.rank != init.rank)
    refuse("rank", std::to_string(c.lora.rank), std::to_string(init.rank), "r");
  if (adapter.has("alpha") && c.lora.alpha != init.alpha)
    refuse("alpha", number_text(c.lora.alpha), number_text(init.alpha), "lora_alpha");
  if (adapter.has("rslora") && c.lora.use_rslora != init.use_rslora)
    refuse("rslora", c.lora.use_rslora ? "true" : "false", init.use_rslora ? "true" : "false", "use_rslora");
  const auto sorted = [](std::vector<Proj> targets) {
    std::sort(targets.begin(), targets.end());
    return targets;
  };
  if (adapter.has("targets") && sorted(c.lora.targets) != sorted(init.targets))
    refuse("targets", targets_text(c.lora), targets_text(init), "target_modules");
}

void read_adapter(const ConfigNode& adapter, TrainConfig& c) {
  c.full_parameter = adapter.get_choice("method", {"lora", "full"}, "lora") == "full";
  c.lora.rank = adapter.get<int64_t>("rank", c.lora.rank, Bounds::at_least(1));
  c.lora.alpha = adapter.get<double>("alpha", c.lora.alpha, Bounds::greater_than(0));
  c.lora.use_rslora = adapter.get<bool>("rslora", c.lora.use_rslora);
  std::vector<std::string> default_targets;
  for (Proj p : c.lora.targets) default_targets.push_back(proj_name(p));
  c.lora.targets.clear();
  for (const std::string& name : adapter.get<std::vector<std::string>>("targets", default_targets)) {
    const auto p = proj_from_name(name);
    if (!p) adapter.fail("targets", "\"" + name + "\" is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
    if (!c.lora.targets_proj(*p)) c.lora.targets.push_back(*p);
  }
  if (c.lora.targets.empty()) adapter.fail("targets", "name at least one projection");
  c.init_adapter = adapter.has("init") ? adapter.existing_dir("init") : "";
  if (c.full_parameter && !c.init_adapter.empty()) adapter.fail("init", "full-parameter training takes no adapter");
  if (!c.init_adapter.empty()) require_agreement_with_init(adapter, c);
}

void read_train(const ConfigNode& train, TrainConfig& c) {
  c.steps = train.get<int64_t>("steps", c.steps, Bounds::at_least(1));
  c.micro_batch_size = train.get<int64_t>("micro_batch_size", c.micro_batch_size, Bounds::at_least(1));
  c.grad_accum_steps = train.get<int64_t>("grad_accum_steps", c.grad_accum_steps, Bounds::at_least(1));
  if (c.grad_accum_steps > kMaxSequencesPerStep / c.micro_batch_size)
    train.fail(train.has("grad_accum_steps") ? "grad_accum_steps" : "micro_batch_size",
               "micro_batch_size " + std::to_string(c.micro_batch_size) + " × grad_accum_steps " +
                   std::to_string(c.grad_accum_steps) + " sequences per step is out of range: allowed 1 to " +
                   std::to_string(kMaxSequencesPerStep) +
                   " in all; lower train.grad_accum_steps or train.micro_batch_size");
  OptimizerOptions& o = c.optimizer;
  o.kind = train.get_choice("optimizer", {"adamw", "sgd"}, "adamw") == "sgd" ? OptimizerKind::sgd : OptimizerKind::adamw;
  o.lr = train.get<double>("lr", o.lr, Bounds::greater_than(0));
  o.beta1 = train.get<double>("beta1", o.beta1, Bounds{.min = 0, .max = 1, .max_exclusive = true});
  o.beta2 = train.get<double>("beta2", o.beta2, Bounds{.min = 0, .max = 1, .max_exclusive = true});
  o.eps = train.get<double>("eps", o.eps, Bounds::greater_than(0));
  o.weight_decay = train.get<double>("weight_decay", o.weight_decay, Bounds::at_least(0));
  const std::string schedule = train.get_choice("schedule", {"constant", "linear", "cosine"}, "constant");
  o.schedule = schedule == "linear" ? LrSchedule::linear : schedule == "cosine" ? LrSchedule::cosine : LrSchedule::constant;
  o.warmup_steps = train.get<int64_t>("warmup_steps", o.warmup_steps, Bounds::at_least(0));
  o.max_grad_norm = train.get<double>("max_grad_norm", o.max_grad_norm, Bounds::at_least(0));
  o.total_steps = c.steps;
  c.seed = static_cast<uint64_t>(train.get<int64_t>("seed", 0, Bounds::at_least(0)));
  c.recompute_activations = train.get<bool>("recompute_activations", c.recompute_activations);
  c.device = train.get_choice("device", {"cpu", "cuda"}, "cpu") == "cuda" ? Device::cuda : Device::cpu;
  if (c.device == Device::cuda && c.full_parameter)
    train.fail("device", "full-parameter training (adapter.method: full) runs on the CPU only");
  const ConfigNode dp = train.child("dp_sgd");
  o.dp_sgd.clip_norm = dp.get<double>("clip_norm", 0.0, Bounds::at_least(0));
  o.dp_sgd.noise_multiplier = dp.get<double>("noise_multiplier", 0.0, Bounds::at_least(0));
  o.dp_sgd.seed = c.seed;
  c.dp_sgd_delta = dp.get<double>("delta", c.dp_sgd_delta, Bounds{.min = 0, .max = 1, .min_exclusive = true, .max_exclusive = true});
  if (dp.has("noise_multiplier") && !dp.has("clip_norm")) dp.fail("clip_norm", "DP-SGD needs a clip_norm");
}

void read_eval(const ConfigNode& eval, bool for_training, TrainConfig& c) {
  c.eval_every = eval.get<int64_t>("every", c.eval_every, Bounds::at_least(0));
  EvalOptions& e = c.eval;
  e.batch_size = eval.get<int64_t>("batch_size", e.batch_size, Bounds::at_least(1));
  e.exact_match = eval.get<bool>("exact_match", e.exact_match);
  e.max_generate_examples = eval.get<int64_t>("max_examples", e.max_generate_examples, Bounds::at_least(0));
  e.sampling.max_new_tokens = eval.get<int64_t>("max_new_tokens", e.sampling.max_new_tokens, Bounds::at_least(1));
  e.sampling.temperature = eval.get<double>("temperature", e.sampling.temperature, Bounds::at_least(0));
  e.sampling.top_p = eval.get<double>("top_p", e.sampling.top_p, Bounds{.min = 0, .max = 1, .min_exclusive = true});
  e.sampling.seed = c.seed;
  const ConfigNode normalize = eval.child("normalize");
  TextNormalization& n = e.normalization;
  n.strip = normalize.get<bool>("strip", n.strip);
  n.collapse_whitespace = normalize.get<bool>("collapse_whitespace", n.collapse_whitespace);
  n.lowercase = normalize.get<bool>("lowercase", n.lowercase);
  n.remove_punctuation = normalize.get<bool>("remove_punctuation", n.remove_punctuation);
  FewShotOptions& shots = c.eval_few_shot;
  shots.count = eval.get<int64_t>("few_shot", shots.count, Bounds::at_least(0));
  shots.file = !eval.has("few_shot_file") ? ""
               : for_training             ? eval.existing_file("few_shot_file")
                                          : eval.get_path("few_shot_file");
  shots.seed = c.seed;
  if (shots.count > 0 && shots.file.empty())
    eval.fail("few_shot", std::to_string(shots.count) +
                              " solved questions before each one need a file to draw them from: set eval.few_shot_file "
                              "to the dev split (multiple-choice JSONL), or set eval.few_shot to 0");
  e.generate_answers = eval.get<bool>("generate_answers", e.generate_answers);
  e.answer_pattern = eval.get<std::string>("answer_pattern", e.answer_pattern);
  try {
    AnswerPattern{e.answer_pattern};
  } catch (const Error& error) {
    eval.fail("answer_pattern",
              std::string(error.what()) + "; give a PCRE2 pattern whose one capture group is the letter");
  }
}

void read_output(const ConfigNode& output, bool for_training, TrainConfig& c) {
  c.output_dir = for_training ? output.require_path("dir") : output.get_path("dir");
  c.log_every = output.get<int64_t>("log_every", c.log_every, Bounds::at_least(1));
  c.save_every = output.get<int64_t>("save_every", c.save_every, Bounds::at_least(0));
}

// Settings the model's shape bounds, checked against MODEL/config.json so that the error points at
// the YAML line. Without a config.json nothing is checked here: loading the model reports it.
void check_against_model(const ConfigNode& root, const TrainConfig& c) {
  const std::filesystem::path file = std::filesystem::path(c.model_dir) / "config.json";
  if (!std::filesystem::is_regular_file(file)) return;
  const LlamaConfig model = LlamaConfig::load(file.string());
  const std::string positions = std::to_string(model.max_position_embeddings);
  const std::string where = " (max_position_embeddings in " + file.string() + ")";
  const ConfigNode data = root.child("data");
  if (data.has("max_seq_len") && c.data.max_seq_len > model.max_position_embeddings)
    data.fail("max_seq_len", std::to_string(c.data.max_seq_len) + " exceeds the model's " + positions + " positions" +
                                 where + ": allowed 2 to " + positions + "; lower data.max_seq_len");
  const ConfigNode eval = root.child("eval");
  if (eval.has("max_new_tokens") && c.eval.sampling.max_new_tokens > model.max_position_embeddings)
    eval.fail("max_new_tokens", std::to_string(c.eval.sampling.max_new_tokens) + " exceeds the model's " + positions +
                                    " positions" + where + ": allowed 1 to " + positions +
                                    "; lower eval.max_new_tokens");
  if (!c.full_parameter && c.init_adapter.empty()) {
    const int64_t max_rank = max_lora_rank(model, c.lora.targets);
    if (c.lora.rank > max_rank)
      root.child("adapter").fail("rank", std::to_string(c.lora.rank) +
                                             " exceeds the dimensions of the targeted projections of " + c.model_dir +
                                             ": allowed 1 to " + std::to_string(max_rank) +
                                             " (the smallest input or output size); lower adapter.rank");
  }
}

}  // namespace

TrainConfig read_train_config(const ConfigNode& root, bool for_training) {
  TrainConfig c;
  c.model_dir = root.existing_dir("model");
  // Absent: the model directory's tokenizer, if it has one. `tokenizer: null`: none (pre-tokenized data).
  if (root.is_null("tokenizer"))
    c.tokenizer_path.clear();
  else if (root.has("tokenizer"))
    c.tokenizer_path = root.get_path("tokenizer");
  else
    c.tokenizer_path = Tokenizer::file_in(c.model_dir);
  read_data(root.child("data"), for_training, c);
  read_adapter(root.child("adapter"), c);
  read_train(root.child("train"), c);
  read_eval(root.child("eval"), for_training, c);
  read_output(root.child("output"), for_training, c);
  check_against_model(root, c);
  return c;
}

}  // namespace fe
