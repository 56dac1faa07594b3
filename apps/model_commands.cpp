// init-model, make-data, merge: commands that write models and data.
#include <cstdlib>
#include <iostream>

#include "apps/commands.h"
#include "apps/output_dir.h"
#include "engine/lora.h"
#include "engine/model_files.h"
#include "engine/synthetic_data.h"

namespace fe::cli {

DType parse_storage_dtype(const std::string& name) {
  if (name == "f32") return DType::f32;
  if (name == "bf16") return DType::bf16;
  if (name == "f16") return DType::f16;
  throw Error("--dtype must be f32, bf16 or f16, got \"" + name + "\"");
}

CLI::Validator within(const Bounds& bounds) {
  return CLI::Validator(
      [bounds](std::string& text) -> std::string {
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0') return "expected a number, got \"" + text + "\"";
        return bounds.contains(value) ? "" : "must be " + bounds.str() + ", got " + text;
      },
      bounds.str());
}

void add_init_model(CLI::App& app) {
  struct Args {
    std::string config, out, dtype = "f32";
    uint64_t seed = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "init-model",
      "Write a randomly initialised Llama checkpoint in HF layout (config.json + model.safetensors).\n"
      "Weights are drawn as HF initialises LlamaForCausalLM: N(0, initializer_range) for embeddings\n"
      "and projections, zero biases, unit RMSNorm weights; the same seed gives the same bytes.");
  cmd->add_option("--config", args->config, "HF-style config.json describing the model shape")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out, "output directory (created if needed)")->required();
  cmd->add_option("--seed", args->seed, "random seed")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "storage dtype of the weights: f32, bf16 or f16")->capture_default_str();
  cmd->callback([args] {
    const LlamaConfig config = LlamaConfig::load(args->config);
    const DType dtype = parse_storage_dtype(args->dtype);
    LlamaWeights::random(config, args->seed, DType::f32).save(args->out, dtype);
    std::cout << "wrote " << args->out << ": " << config.num_parameters() << " parameters, "
              << config.num_hidden_layers << " layers, dtype " << args->dtype << "\n";
  });
}

void add_make_data(CLI::App& app) {
  auto options = std::make_shared<SyntheticOptions>();
  auto out = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "make-data",
      "Generate the synthetic digit tasks used by the quickstart and the tests:\n"
      "  copy \"copy 3 1 4 =\" -> \"3 1 4\";  reverse -> \"4 1 3\";  shift (each digit + 1 mod 10) -> \"4 2 5\".\n"
      "Writes OUT/<task>/train.jsonl and OUT/<task>/eval.jsonl (prompt/completion JSONL; eval prompts never\n"
      "appear in train) and OUT/tokenizer.model, a SentencePiece tokenizer trained on them.");
  cmd->add_option("--out", *out, "output directory")->required();
  cmd->add_option("--train", options->train_examples, "training examples per task")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--eval", options->eval_examples, "held-out evaluation examples per task")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--min-digits", options->min_digits, "shortest digit sequence")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-digits", options->max_digits, "longest digit sequence")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--vocab-size", options->vocab_size, "tokenizer vocabulary (includes 256 byte pieces)")->capture_default_str();
  cmd->add_option("--seed", options->seed, "random seed")->capture_default_str();
  cmd->add_option("--shards", options->shards, "also split each train set into N participant files train.shard-K.jsonl")
      ->capture_default_str();
  cmd->callback([options, out] {
    write_synthetic_suite(*out, *options);
    std::cout << "wrote " << *out << ": tasks copy, reverse, shift (" << options->train_examples << " train / "
              << options->eval_examples << " eval each) and tokenizer.model\n";
  });
}

void add_merge(CLI::App& app) {
  struct Args {
    std::string model, adapter, out, dtype = "f32";
    bool overwrite = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "merge", "Fold a PEFT LoRA adapter into its base model: writes a full HF checkpoint (W + scale·B·A)\n"
               "that needs no adapter, like PEFT's merge_and_unload.");
  cmd->add_option("--model", args->model, "base model directory (HF layout)")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--adapter", args->adapter, "PEFT adapter directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--out", args->out, "output directory: new or empty")->required();
  cmd->add_option("--dtype", args->dtype, "storage dtype: f32, bf16 or f16")->capture_default_str();
  cmd->add_flag("--overwrite", args->overwrite,
                "write into --out although it is not empty (the files merge writes are replaced, the rest stays)");
  cmd->callback([args] {
    const DType dtype = parse_storage_dtype(args->dtype);
    // A merged model cannot be told from any other model, the base included: any content is refused.
    if (claim_output_dir(args->out, "--out", "merge", nullptr, args->overwrite) == OutputDir::claimed_with_overwrite)
      std::cout << "--overwrite: writing into " << args->out << ", which is not empty\n";
    const LlamaWeights base = LlamaWeights::load(args->model, DType::f32);
    const LoraAdapter adapter = LoraAdapter::load_peft(args->adapter, base.config, DType::f32);
    merge_lora(base, adapter).save(args->out, dtype);
    copy_model_companion_files(args->model, args->model, args->out);
    std::cout << "wrote " << args->out << ": " << args->model << " with " << args->adapter << " merged\n";
  });
}

}  // namespace fe::cli
