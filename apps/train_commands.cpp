// train, eval, generate: the single-participant workflow.
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "engine/train_run.h"
#include "fed/processes.h"

namespace fe::cli {
namespace {

const char* kConfigHelp = "YAML config (see configs/train.yaml for every key and its default)";

TrainConfig read_config(const std::string& path, bool for_training) {
  const ConfigNode root = ConfigNode::load_file(path);
  TrainConfig config = read_train_config(root, for_training);
  root.check_all_keys_used();
  return config;
}

}  // namespace

void add_train(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Fine-tune a LoRA adapter (or, with adapter.method: full, every weight) on a JSONL dataset.\n"
      "Prints progress (step, loss, tokens/s, ETA), evaluates before/during/after training when\n"
      "data.eval is set, writes OUTPUT/metrics.jsonl and saves OUTPUT/adapter (PEFT) or OUTPUT/model.\n"
      "Ctrl-C (or SIGTERM) stops after the current step with a checkpoint that --resume continues from.");
  cmd->add_option("config", *path, kConfigHelp)->required()->check(CLI::ExistingFile);
  auto resume = std::make_shared<bool>(false);
  cmd->add_flag("--resume", *resume,
                "continue from the newest OUTPUT/checkpoint-N (output.save_every, or Ctrl-C) where a run\n"
                "stopped, with the same settings: the uninterrupted run's result (bit for bit on the CPU)");
  cmd->callback([path, resume] {
    const std::atomic<bool>* stop = fed::stop_on_signals();  // before any work, so no signal finds the default action
    const TrainSummary summary = run_training(read_config(*path, true), std::cout, *resume, stop);
    if (summary.stopped) std::exit(130);  // the shell's code for an interrupted command
    std::cout << "done: " << summary.steps << " steps, final train loss " << summary.final_train_loss << "\n";
  });
}

void add_eval(CLI::App& app) {
  struct Args {
    std::string config, adapter;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Evaluate a model (with an adapter) on data.eval of a training config: mean loss, perplexity and\n"
      "exact-match accuracy of generated completions (eval section: max_examples, max_new_tokens,\n"
      "temperature, top_p, normalize).");
  cmd->add_option("config", args->config, kConfigHelp)->required()->check(CLI::ExistingFile);
  cmd->add_option("--adapter", args->adapter, "PEFT adapter to evaluate (default: adapter.init of the config; none: the base model)")
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--json", args->json, "print the result as one JSON object");
  cmd->callback([args] {
    const TrainConfig config = read_config(args->config, false);
    if (config.eval_file.empty()) throw Error(args->config + ": fedengine eval needs data.eval");
    const LoadedRun run = load_run(config, false);
    const LlamaModel model(run.weights);
    const std::string adapter_dir = args->adapter.empty() ? config.init_adapter : args->adapter;
    LoraAdapter adapter;
    if (!adapter_dir.empty())
      adapter = LoraAdapter::load_peft(adapter_dir, run.weights.config, DType::f32).to_device(model.device());
    const EvalResult r = evaluate(model, adapter_dir.empty() ? nullptr : &adapter, run.eval, run.tokenizer.get(), config.eval);
    if (args->json)
      std::cout << nlohmann::json{{"loss", r.loss}, {"perplexity", r.perplexity}, {"tokens", r.tokens},
                                  {"exact_match", r.exact_matches}, {"examples", r.generated_examples},
                                  {"accuracy", r.accuracy()}}.dump()
                << "\n";
    else
      std::cout << describe(r) << "\n";
  });
}

void add_generate(CLI::App& app) {
  struct Args {
    std::string model, adapter, tokenizer, prompt, device = "cpu";
    SamplingOptions sampling;
    bool no_bos = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("generate", "Continue a prompt with a model (and optionally a LoRA adapter), using a KV cache.");
  cmd->add_option("--model", args->model, "model directory (HF layout)")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--adapter", args->adapter, "PEFT adapter directory")->check(CLI::ExistingDirectory);
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.model or a directory holding one (default: the model directory)");
  cmd->add_option("--prompt", args->prompt, "text to continue")->required();
  cmd->add_option("--max-new-tokens", args->sampling.max_new_tokens, "tokens to generate at most")->capture_default_str();
  cmd->add_option("--temperature", args->sampling.temperature, "0 for greedy decoding")->capture_default_str();
  cmd->add_option("--top-p", args->sampling.top_p, "nucleus sampling mass")->capture_default_str();
  cmd->add_option("--seed", args->sampling.seed, "sampling seed")->capture_default_str();
  cmd->add_flag("--no-bos", args->no_bos, "do not start the prompt with the BOS token");
  cmd->add_option("--device", args->device, "cpu (f32) or cuda (bf16 in GPU memory)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->callback([args] {
    const Device device = args->device == "cuda" ? Device::cuda : Device::cpu;
    const LlamaWeights weights = compute_weights(LlamaWeights::load(args->model, DType::f32), device, "--device");
    const auto tokenizer = Tokenizer::load(args->tokenizer.empty() ? args->model : args->tokenizer);
    LoraAdapter adapter;
    if (!args->adapter.empty()) adapter = LoraAdapter::load_peft(args->adapter, weights.config, DType::f32).to_device(device);
    std::vector<int32_t> prompt;
    if (!args->no_bos && tokenizer->bos_id() >= 0) prompt.push_back(tokenizer->bos_id());
    for (int32_t id : tokenizer->encode(args->prompt)) prompt.push_back(id);
    SamplingOptions sampling = args->sampling;
    if (tokenizer->eos_id() >= 0) sampling.stop_ids.push_back(tokenizer->eos_id());
    sampling.vocab_limit = tokenizer->vocab_size();
    const LlamaModel model(weights);
    const auto tokens = generate(model, args->adapter.empty() ? nullptr : &adapter, prompt, sampling);
    std::cout << tokenizer->decode(tokens) << "\n";
  });
}

}  // namespace fe::cli
