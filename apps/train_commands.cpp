// train, eval, generate: the single-participant workflow.
#include <cctype>
#include <climits>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/output_dir.h"
#include "engine/generation_config.h"
#include "engine/train_run.h"
#include "fed/processes.h"

namespace fe::cli {
namespace {

const char* kConfigHelp = "YAML config (see configs/train.yaml for every key and its default)";

TrainConfig read_config(const std::string& path, bool for_training) {
  const ConfigNode root = ConfigNode::load_file(path);
  TrainConfig config;
  root.read_checked([&] { config = read_train_config(root, for_training); });
  return config;
}

// "1, 2 3" → {1, 2, 3}: ids separated by commas and/or spaces.
std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string token;
  const auto flush = [&] {
    if (token.empty()) return;
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(token, &used);
    } catch (const std::exception&) {
    }
    if (used != token.size() || id < 0 || id > INT32_MAX)
      throw Error("--prompt-ids: \"" + token + "\" is not a token id (expected ids like \"1, 450, 4996\")");
    ids.push_back(static_cast<int32_t>(id));
    token.clear();
  };
  for (const char ch : text) {
    if (ch == ',' || std::isspace(static_cast<unsigned char>(ch)))
      flush();
    else
      token += ch;
  }
  flush();
  if (ids.empty()) throw Error("--prompt-ids: no token ids given");
  return ids;
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
  auto overwrite = std::make_shared<bool>(false);
  cmd->add_flag("--overwrite", *overwrite,
                "write into output.dir even when it holds files that no earlier `fedengine train` wrote (what\n"
                "train writes there is replaced, the rest stays); without it such a directory is refused");
  cmd->callback([path, resume, overwrite] {
    const std::atomic<bool>* stop = fed::stop_on_signals();  // before any work, so no signal finds the default action
    const TrainConfig config = read_config(*path, true);
    const OutputDir output = claim_output_dir(config.output_dir, "output.dir", "train", is_training_output, *overwrite);
    if (output == OutputDir::earlier_output && !*resume)
      std::cout << "replacing the output of an earlier run in " << config.output_dir << "\n";
    if (output == OutputDir::claimed_with_overwrite)
      std::cout << "--overwrite: writing into " << config.output_dir << " beside the files already there\n";
    const TrainSummary summary = run_training(config, std::cout, *resume, stop);
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
      "temperature, top_p, normalize). Multiple-choice questions ({\"question\", \"choices\", \"answer\",\n"
      "\"subject\"?}) are scored as lm-evaluation-harness scores them: acc (the most likely choice) and\n"
      "acc_norm (the most likely per character), overall and per subject; eval.few_shot and\n"
      "eval.few_shot_file give k-shot prompts, eval.generate_answers also scores a generated answer\n"
      "letter read with eval.answer_pattern.");
  cmd->add_option("config", args->config, kConfigHelp)->required()->check(CLI::ExistingFile);
  cmd->add_option("--adapter", args->adapter,
                  "PEFT adapter directory to evaluate (default: adapter.init of the config), or none: the base\n"
                  "model alone")
      ->check(CLI::IsMember({"none"}) | CLI::ExistingDirectory);
  cmd->add_flag("--json", args->json, "print the result as one JSON object");
  cmd->callback([args] {
    const TrainConfig config = read_config(args->config, false);
    if (config.eval_file.empty()) throw Error(args->config + ": fedengine eval needs data.eval");
    const LoadedRun run = load_run(config, false);
    const LlamaModel model(run.weights);
    const std::string adapter_dir = args->adapter == "none" ? ""
                                    : args->adapter.empty() ? config.init_adapter
                                                            : args->adapter;
    LoraAdapter adapter;
    if (!adapter_dir.empty())
      adapter = LoraAdapter::load_peft(adapter_dir, run.weights.config, DType::f32).to_device(model.device());
    const EvalResult r = evaluate(model, adapter_dir.empty() ? nullptr : &adapter, run.eval, run.tokenizer.get(),
                                  config.eval, run.stop_ids);
    if (args->json) {
      nlohmann::json figures = {
          {"loss", r.loss},          {"perplexity", r.perplexity},     {"tokens", r.tokens},
          {"examples", r.examples},  {"exact_match", r.exact_matches}, {"exact_match_examples", r.generated_examples},
          {"accuracy", r.accuracy()}};
      if (r.choices.questions > 0) figures["multiple_choice"] = multiple_choice_json(r);
      std::cout << figures.dump() << "\n";
    } else {
      std::cout << describe(r) << "\n" << describe_subjects(r);
    }
  });
}

void add_generate(CLI::App& app) {
  struct Args {
    std::string model, adapter, tokenizer, prompt, prompt_ids, system, device = "cpu";
    SamplingOptions sampling;
    bool no_bos = false, chat = false, print_ids = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "generate",
      "Continue a prompt with a model (and optionally a LoRA adapter), using a KV cache. Generation stops at\n"
      "--max-new-tokens or at any of the model's stop ids (generation_config.json's eos_token_id and the\n"
      "tokenizer's EOS). With --chat the prompt is one user turn laid out by the model's chat template\n"
      "(tokenizer_config.json), as HF's apply_chat_template(add_generation_prompt=True) does.");
  cmd->add_option("--model", args->model, "model directory (HF layout)")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--adapter", args->adapter, "PEFT adapter directory")->check(CLI::ExistingDirectory);
  cmd->add_option("--tokenizer", args->tokenizer,
                  "tokenizer.json, tokenizer.model or a directory holding one (default: the model directory)");
  CLI::Option* text = cmd->add_option("--prompt", args->prompt, "text to continue (with --chat: the user's message)");
  CLI::Option* ids = cmd->add_option("--prompt-ids", args->prompt_ids,
                                     "token ids to continue, as given (\"1, 450, 4996\"); no tokenizer needed");
  text->excludes(ids);
  cmd->add_flag("--chat", args->chat, "lay the prompt out as a user turn with the model's chat template")->needs(text);
  cmd->add_option("--system", args->system, "with --chat: a system message before the user's")->needs("--chat");
  cmd->add_option("--max-new-tokens", args->sampling.max_new_tokens, "tokens to generate at most")->capture_default_str();
  cmd->add_option("--temperature", args->sampling.temperature, "0 for greedy decoding")
      ->capture_default_str()
      ->check(within(Bounds::at_least(0)));
  cmd->add_option("--top-p", args->sampling.top_p, "nucleus sampling mass")
      ->capture_default_str()
      ->check(within(Bounds{.min = 0, .max = 1, .min_exclusive = true}));
  cmd->add_option("--seed", args->sampling.seed, "sampling seed")->capture_default_str();
  cmd->add_flag("--no-bos", args->no_bos,
                "do not start a --prompt with BOS (by default it gets one where the tokenizer adds one)");
  cmd->add_flag("--ids", args->print_ids,
                "print the generated token ids instead of text (the default without a tokenizer)");
  cmd->add_option("--device", args->device, "cpu (f32) or cuda (bf16 in GPU memory)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->callback([args] {
    if (args->prompt.empty() && args->prompt_ids.empty())
      throw Error("generate: give --prompt TEXT or --prompt-ids IDS");
    const Device device = args->device == "cuda" ? Device::cuda : Device::cpu;
    const LlamaWeights weights = compute_weights(LlamaWeights::load(args->model, DType::f32), device, "--device");
    // A tokenizer is needed for text in or out; ids alone need none.
    const std::string tokenizer_path = args->tokenizer.empty() ? Tokenizer::file_in(args->model) : args->tokenizer;
    std::unique_ptr<Tokenizer> tokenizer;
    if (!tokenizer_path.empty())
      tokenizer = Tokenizer::load(tokenizer_path);
    else if (args->prompt_ids.empty())
      throw Error(args->model + " holds no tokenizer.json or tokenizer.model: give --tokenizer, or --prompt-ids");
    LoraAdapter adapter;
    if (!args->adapter.empty())
      adapter = LoraAdapter::load_peft(args->adapter, weights.config, DType::f32).to_device(device);

    std::vector<int32_t> prompt;
    if (!args->prompt_ids.empty()) {
      prompt = parse_ids(args->prompt_ids);
      for (const int32_t id : prompt)
        if (id >= weights.config.vocab_size)
          throw Error("--prompt-ids: token id " + std::to_string(id) + " is outside the model's vocabulary [0, " +
                      std::to_string(weights.config.vocab_size) + ")");
    } else if (args->chat) {
      if (!tokenizer->has_chat_template())
        throw Error(tokenizer_path +
                    ": the tokenizer has no chat template (tokenizer_config.json's chat_template); "
                    "drop --chat and write the prompt as the model expects it");
      nlohmann::ordered_json messages = nlohmann::ordered_json::array();
      if (!args->system.empty()) messages.push_back({{"role", "system"}, {"content", args->system}});
      messages.push_back({{"role", "user"}, {"content", args->prompt}});
      prompt = tokenizer->encode(tokenizer->apply_chat_template(messages, true));
    } else {
      if (!args->no_bos && tokenizer->add_bos() && tokenizer->bos_id() >= 0) prompt.push_back(tokenizer->bos_id());
      for (int32_t id : tokenizer->encode(args->prompt)) prompt.push_back(id);
    }
    if (prompt.empty()) throw Error("generate: the prompt encodes to no tokens");
    SamplingOptions sampling = args->sampling;
    sampling.stop_ids = stop_ids(args->model, weights.config, tokenizer.get());
    if (tokenizer) sampling.vocab_limit = tokenizer->vocab_size();
    const LlamaModel model(weights);
    const auto tokens = generate(model, args->adapter.empty() ? nullptr : &adapter, prompt, sampling);
    if (args->print_ids || !tokenizer) {
      std::string line;
      for (const int32_t id : tokens) line += (line.empty() ? "" : " ") + std::to_string(id);
      std::cout << line << "\n";
    } else {
      std::cout << tokenizer->decode(tokens) << "\n";
    }
  });
}

}  // namespace fe::cli
