#include "engine/train_run.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "engine/accountant.h"
#include "engine/durable_file.h"
#include "engine/generation_config.h"
#include "engine/metrics_log.h"
#include "engine/model_files.h"

namespace fe {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string format_duration(double seconds) {
  const auto total = static_cast<int64_t>(std::lround(std::max(0.0, seconds)));
  char text[32];
  std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", static_cast<long long>(total / 3600),
                static_cast<long long>(total / 60 % 60), static_cast<long long>(total % 60));
  return text;
}

constexpr const char* kTrainerState = "trainer_state.safetensors";
constexpr const char* kRunSettings = "run_settings.json";

// What a checkpoint's step means depends on these: --resume refuses a config that changes them.
nlohmann::json run_settings(const TrainConfig& c, size_t train_examples) {
  nlohmann::json settings = {{"train.steps", c.steps},
                             {"train.micro_batch_size", c.micro_batch_size},
                             {"train.grad_accum_steps", c.grad_accum_steps},
                             {"train.seed", c.seed},
                             {"data.train", c.train_file},
                             {"examples in data.train", train_examples},
                             {"adapter.method", c.full_parameter ? "full" : "lora"}};
  if (!c.full_parameter) settings["adapter"] = c.lora.to_peft_json("");
  return settings;
}

void save_result(const TrainConfig& c, const LlamaWeights& weights, const LoraAdapter* adapter, const fs::path& dir) {
  // An adapter carries the tokenizer and generation settings too, as PEFT's save_pretrained
  // beside a tokenizer does: HF tools and `generate` then use it without the training config.
  const fs::path saved = adapter ? dir / "adapter" : dir / "model";
  if (adapter)
    adapter->save_peft(saved.string(), c.model_dir);
  else
    weights.save(saved.string(), DType::f32);
  copy_model_companion_files(c.model_dir, c.tokenizer_path, saved.string());
}

// OUTPUT/checkpoint-N: the result so far and the optimizer's state, replaced whole, so a crash
// leaves either a whole checkpoint or none.
void save_checkpoint(const TrainConfig& c, const nlohmann::json& settings, const LlamaWeights& weights,
                     const LoraAdapter* adapter, const Trainer& trainer, int64_t step) {
  DirectoryReplacement checkpoint(fs::path(c.output_dir) / ("checkpoint-" + std::to_string(step)));
  const fs::path& staging = checkpoint.staging();
  save_result(c, weights, adapter, staging);
  write_named_tensors((staging / kTrainerState).string(), trainer.optimizer_state());
  write_file_whole((staging / kRunSettings).string(), settings.dump(2) + "\n");
  checkpoint.commit();
}

bool is_checkpoint_name(const std::string& name) {
  return name.starts_with("checkpoint-") && name.find_first_not_of("0123456789", 11) == std::string::npos &&
         name.size() > 11 && name.size() <= 11 + 18;
}

// A fresh run owns its output directory: checkpoints of an earlier run there would otherwise be
// what --resume picks up later.
void remove_earlier_checkpoints(const TrainConfig& c, std::ostream& progress) {
  if (!fs::is_directory(c.output_dir)) return;
  int removed = 0;
  for (const auto& entry : fs::directory_iterator(c.output_dir)) {
    std::string name = entry.path().filename().string();
    if (name.ends_with(".tmp") || name.ends_with(".old")) name.resize(name.size() - 4);  // DirectoryReplacement's
    if (is_checkpoint_name(name)) removed += fs::remove_all(entry.path()) > 0;
  }
  if (removed) progress << "removed " << removed << " checkpoint(s) of an earlier run in " << c.output_dir << "\n";
}

// The newest complete checkpoint's step and directory.
std::pair<int64_t, fs::path> newest_checkpoint(const TrainConfig& c) {
  std::pair<int64_t, fs::path> newest{0, {}};
  if (fs::is_directory(c.output_dir))
    for (const auto& entry : fs::directory_iterator(c.output_dir)) {
      const std::string name = entry.path().filename().string();
      if (!is_checkpoint_name(name) || !fs::exists(entry.path() / kTrainerState)) continue;
      const int64_t step = std::stoll(name.substr(11));
      if (step > newest.first) newest = {step, entry.path()};
    }
  if (newest.first == 0)
    throw Error(c.output_dir + ": no checkpoint to resume from (output.save_every writes checkpoint-N with the optimizer's state)");
  return newest;
}

void require_same_settings(const fs::path& checkpoint, const nlohmann::json& now) {
  const nlohmann::json then = nlohmann::json::parse(std::ifstream(checkpoint / kRunSettings), nullptr, false);
  if (then.is_discarded()) throw Error((checkpoint / kRunSettings).string() + ": unreadable; cannot check the run's settings");
  for (const auto& [key, value] : now.items())
    if (!then.contains(key) || then[key] != value)
      throw Error(checkpoint.string() + " was written by a run with " + key + " = " + (then.contains(key) ? then[key].dump() : "(unset)") +
                  "; this config has " + value.dump() + ". Resume with the run's settings, or start afresh without --resume");
}

// Keeps the metrics of steps up to `step` (a resumed run writes the later ones again), dropping a
// line a crash cut short; the file is rewritten whole. Returns the run's elapsed
// seconds at that step, where the resumed run's clock continues.
double keep_metrics_up_to(const fs::path& file, int64_t step) {
  std::ifstream in(file);
  std::string kept;
  double elapsed = 0;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
    if (!record.is_object() || record.value("step", int64_t{0}) > step) continue;
    kept += line + "\n";
    elapsed = std::max(elapsed, record.value("elapsed_s", 0.0));
  }
  in.close();
  write_file_whole(file.string(), kept);
  return elapsed;
}

}  // namespace

bool is_training_output(std::string name) {
  if (name.ends_with(".tmp") || name.ends_with(".old")) name.resize(name.size() - 4);  // staging names
  return name == "metrics.jsonl" || name == "adapter" || name == "model" || is_checkpoint_name(name);
}

namespace {

std::string fraction(int64_t part, int64_t whole) {
  char text[80];
  std::snprintf(text, sizeof text, "%lld/%lld (%.1f%%)", static_cast<long long>(part), static_cast<long long>(whole),
                whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0);
  return text;
}

std::string describe(const ChoiceAccuracy& a) {
  std::string line = "acc " + fraction(a.correct, a.questions) + " | acc_norm " + fraction(a.correct_norm, a.questions);
  if (a.generated > 0) line += " | answer letter " + fraction(a.generated_correct, a.generated);
  return line;
}

nlohmann::json to_json(const ChoiceAccuracy& a) {
  nlohmann::json figures = {{"questions", a.questions}, {"acc", a.acc()}, {"acc_norm", a.acc_norm()}};
  if (a.generated > 0) {
    figures["generated"] = a.generated;
    figures["generated_acc"] = a.generated_acc();
  }
  return figures;
}

}  // namespace

std::string describe(const EvalResult& r) {
  char text[160];
  std::snprintf(text, sizeof text, "loss %.4f | ppl %.3f", r.loss, r.perplexity);
  std::string line = text;
  if (r.generated_examples > 0) line += " | exact match " + fraction(r.exact_matches, r.generated_examples);
  if (r.choices.questions > 0) line += " | multiple choice " + describe(r.choices);
  return line;
}

std::string describe_subjects(const EvalResult& r) {
  std::string lines;
  if (r.by_subject.empty() || (r.by_subject.size() == 1 && r.by_subject.contains(""))) return lines;
  for (const auto& [subject, accuracy] : r.by_subject)
    lines += "  " + (subject.empty() ? std::string("(no subject)") : subject) + ": " + describe(accuracy) + "\n";
  return lines;
}

nlohmann::json multiple_choice_json(const EvalResult& r) {
  if (r.choices.questions == 0) return nlohmann::json::object();
  nlohmann::json figures = to_json(r.choices);
  nlohmann::json subjects = nlohmann::json::object();
  for (const auto& [subject, accuracy] : r.by_subject) subjects[subject] = to_json(accuracy);
  figures["subjects"] = subjects;
  return figures;
}

nlohmann::json multiple_choice_metrics(const EvalResult& r) {
  const nlohmann::json figures = multiple_choice_json(r);  // named: items() refers to it
  nlohmann::json metrics = nlohmann::json::object();
  for (const auto& [key, value] : figures.items()) metrics["eval_mc_" + key] = value;
  return metrics;
}

LlamaWeights compute_weights(const LlamaWeights& host, Device device, const std::string& setting) {
  if (device == Device::cpu) return host;
  if (const std::string reason = gpu_unavailable_reason(); !reason.empty())
    throw Error(setting + " is cuda, but " + reason);
  return host.converted(DType::bf16).to_device(device);
}

LoadedRun load_run(const TrainConfig& c, bool load_train_data) {
  LoadedRun run;
  run.weights = compute_weights(LlamaWeights::load(c.model_dir, DType::f32), c.device);
  if (!c.tokenizer_path.empty()) run.tokenizer = Tokenizer::load(c.tokenizer_path);
  if (run.tokenizer && run.tokenizer->vocab_size() > run.weights.config.vocab_size)
    throw Error(c.tokenizer_path + ": the tokenizer's " + std::to_string(run.tokenizer->vocab_size()) +
                " tokens exceed the model's vocab_size " + std::to_string(run.weights.config.vocab_size));
  const int64_t vocab_size = run.weights.config.vocab_size;
  if (load_train_data) run.train = load_jsonl(c.train_file, run.tokenizer.get(), c.data, vocab_size);
  if (!c.eval_file.empty()) {
    DataOptions eval_data = c.data;
    eval_data.few_shot = c.eval_few_shot;
    run.eval = load_jsonl(c.eval_file, run.tokenizer.get(), eval_data, vocab_size);
  }
  run.stop_ids = stop_ids(c.model_dir, run.weights.config, run.tokenizer.get());
  return run;
}

TrainSummary run_training(const TrainConfig& c, std::ostream& progress, bool resume, const std::atomic<bool>* stop) {
  LoadedRun run = load_run(c, true);
  const LlamaConfig& model_config = run.weights.config;
  const LlamaModel model(run.weights, {.recompute_activations = c.recompute_activations});
  LoraAdapter adapter;
  std::unique_ptr<Trainer> trainer;
  if (c.full_parameter) {
    trainer = std::make_unique<Trainer>(model, run.weights, c.optimizer);
  } else {
    adapter = c.init_adapter.empty() ? LoraAdapter::init(model_config, c.lora, c.seed, DType::f32)
                                     : LoraAdapter::load_peft(c.init_adapter, model_config, DType::f32);
    adapter = adapter.to_device(c.device);
    trainer = std::make_unique<Trainer>(model, adapter, c.optimizer);
  }
  const LoraAdapter* lora = c.full_parameter ? nullptr : &adapter;
  int64_t first_step = 1;
  double elapsed_before = 0;  // seconds the run had trained before it resumed
  const nlohmann::json settings = run_settings(c, run.train.size());
  if (!resume) remove_earlier_checkpoints(c, progress);
  if (resume) {
    const auto [step, dir] = newest_checkpoint(c);
    require_same_settings(dir, settings);
    // In place: the model and the trainer share the trained tensors.
    if (lora)
      copy_named_tensors(adapter.named_tensors(), LoraAdapter::load_peft((dir / "adapter").string(), model_config, DType::f32).named_tensors(),
                (dir / "adapter").string());
    else
      copy_named_tensors(run.weights.named_tensors(), LlamaWeights::load((dir / "model").string(), DType::f32).named_tensors(),
                (dir / "model").string());
    trainer->load_optimizer_state(read_named_tensors((dir / kTrainerState).string()));
    elapsed_before = keep_metrics_up_to(fs::path(c.output_dir) / "metrics.jsonl", step);
    first_step = step + 1;
    progress << "resuming after step " << step << " from " << dir.string() << "\n";
  }

  fs::create_directories(c.output_dir);
  MetricsLog metrics((fs::path(c.output_dir) / "metrics.jsonl").string(), resume);
  // What trains, then the base it trains on (frozen under LoRA).
  progress << "training "
           << (lora ? "a LoRA adapter (" + std::to_string(lora->num_parameters()) + " parameters) of "
                    : "all parameters of ")
           << c.model_dir << " (" << model_config.num_parameters() << " parameters" << (lora ? ", frozen" : "")
           << ") on " << run.train.size() << " examples, " << c.steps << " steps of "
           << c.micro_batch_size * c.grad_accum_steps << " sequences"
           << (c.device == Device::cuda ? ", on the GPU in bf16" : "") << "\n";

  auto evaluate_now = [&](int64_t step) {
    if (run.eval.empty()) return EvalResult{};
    const EvalResult r = evaluate(model, lora, run.eval, run.tokenizer.get(), c.eval, run.stop_ids);
    progress << "eval  step " << step << " | " << describe(r) << std::endl;
    nlohmann::json record = {{"step", step},
                             {"eval_loss", r.loss},
                             {"eval_perplexity", r.perplexity},
                             {"eval_examples", r.examples},
                             {"eval_exact_match", r.exact_matches},
                             {"eval_exact_match_examples", r.generated_examples},
                             {"eval_accuracy", r.accuracy()}};
    record.update(multiple_choice_metrics(r));
    metrics.write(record);
    return r;
  };

  // DP-SGD's privacy spent: each step is a sample of micro_batch·grad_accum sequences.
  const DpSgdOptions& dp = c.optimizer.dp_sgd;
  RdpAccountant accountant;
  const double sampling_rate = std::min(1.0, static_cast<double>(c.micro_batch_size * c.grad_accum_steps) /
                                                 static_cast<double>(run.train.size()));
  auto epsilon = [&] { return dp.noise_multiplier > 0 ? accountant.epsilon(c.dp_sgd_delta) : INFINITY; };
  if (dp.enabled() && dp.noise_multiplier > 0 && first_step > 1) accountant.add_steps(sampling_rate, dp.noise_multiplier, first_step - 1);

  TrainSummary summary;
  if (first_step == 1) summary.before = evaluate_now(0);
  BatchIterator batches(run.train, c.micro_batch_size, c.seed, c.bucket_by_length, run.pad_id());
  const int64_t consumed = (first_step - 1) * c.grad_accum_steps;  // micro-batches of the steps done
  batches.seek(consumed / batches.batches_per_epoch(), consumed % batches.batches_per_epoch());
  const auto start = Clock::now();
  int64_t tokens_seen = 0;
  for (int64_t step = first_step; step <= c.steps; ++step) {
    std::vector<Batch> micro_batches;
    for (int64_t i = 0; i < c.grad_accum_steps; ++i) {
      micro_batches.push_back(batches.next());
      tokens_seen += micro_batches.back().input_ids.numel();
    }
    const StepStats stats = trainer->step(micro_batches);
    if (dp.enabled() && dp.noise_multiplier > 0) accountant.add_steps(sampling_rate, dp.noise_multiplier, 1);
    summary.final_train_loss = stats.loss;
    summary.steps = step;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double tokens_per_s = tokens_seen / std::max(elapsed, 1e-9);
    nlohmann::json record = {{"step", step}, {"loss", stats.loss}, {"lr", stats.lr}, {"grad_norm", stats.grad_norm},
                             {"label_tokens", stats.tokens}, {"tokens_per_s", tokens_per_s},
                             {"elapsed_s", elapsed_before + elapsed},
                             {"epoch", batches.epoch()}};
    if (dp.enabled()) record["epsilon"] = epsilon();
    const bool on_gpu = c.device == Device::cuda;
    if (on_gpu) record["gpu_memory_peak_bytes"] = gpu_tensor_memory().peak;
    metrics.write(record);
    if (step % c.log_every == 0 || step == c.steps) {
      char line[200];
      std::snprintf(line, sizeof line, "step %lld/%lld | loss %.4f | lr %.2e | grad %.3f | %.0f tok/s | ETA %s",
                    static_cast<long long>(step), static_cast<long long>(c.steps), stats.loss, stats.lr,
                    stats.grad_norm, tokens_per_s,
                    format_duration(elapsed / static_cast<double>(step - first_step + 1) * static_cast<double>(c.steps - step)).c_str());
      progress << line;
      if (dp.enabled()) progress << " | DP-SGD ε " << epsilon() << " (δ " << c.dp_sgd_delta << ")";
      if (on_gpu) {
        std::snprintf(line, sizeof line, " | GPU memory peak %.2f GiB", static_cast<double>(gpu_tensor_memory().peak) / (1 << 30));
        progress << line;
      }
      progress << std::endl;
    }
    if (c.eval_every > 0 && step % c.eval_every == 0 && step < c.steps) evaluate_now(step);
    const bool stopping = stop && *stop && step < c.steps;
    if (step < c.steps && (stopping || (c.save_every > 0 && step % c.save_every == 0)))
      save_checkpoint(c, settings, run.weights, lora, *trainer, step);
    if (stopping) {
      progress << "stopped after step " << step << ": saved checkpoint-" << step << "; --resume continues from it"
               << std::endl;
      summary.stopped = true;
      return summary;
    }
  }
  summary.after = evaluate_now(c.steps);
  save_result(c, run.weights, lora, c.output_dir);
  progress << "saved " << (lora ? "adapter to " : "model to ") << (fs::path(c.output_dir) / (lora ? "adapter" : "model")).string()
           << std::endl;
  return summary;
}

}  // namespace fe
