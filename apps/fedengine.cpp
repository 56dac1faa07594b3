// fedengine — the command-line interface. Each subcommand documents itself under --help.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "engine/llama_weights.h"

namespace {

fe::DType parse_storage_dtype(const std::string& name) {
  if (name == "f32") return fe::DType::f32;
  if (name == "bf16") return fe::DType::bf16;
  if (name == "f16") return fe::DType::f16;
  throw fe::Error("--dtype must be f32, bf16 or f16, got \"" + name + "\"");
}

struct InitModelArgs {
  std::string config;
  std::string out;
  uint64_t seed = 0;
  std::string dtype = "f32";
};

void add_init_model(CLI::App& app, InitModelArgs& args) {
  CLI::App* cmd = app.add_subcommand(
      "init-model",
      "Write a randomly initialised Llama checkpoint in HF layout (config.json + model.safetensors).\n"
      "Weights are drawn as HF initialises LlamaForCausalLM: N(0, initializer_range) for embeddings\n"
      "and projections, zero biases, unit RMSNorm weights; the same seed gives the same bytes.");
  cmd->add_option("--config", args.config, "HF-style config.json describing the model shape")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", args.out, "output directory (created if needed)")->required();
  cmd->add_option("--seed", args.seed, "random seed")->capture_default_str();
  cmd->add_option("--dtype", args.dtype, "storage dtype of the weights: f32, bf16 or f16")->capture_default_str();
  cmd->callback([&args] {
    const fe::LlamaConfig config = fe::LlamaConfig::load(args.config);
    const fe::LlamaWeights weights = fe::LlamaWeights::random(config, args.seed, fe::DType::f32);
    weights.save(args.out, parse_storage_dtype(args.dtype));
    std::cout << "wrote " << args.out << ": " << config.num_parameters() << " parameters, "
              << config.num_hidden_layers << " layers, dtype " << args.dtype << "\n";
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fedengine: federated LoRA fine-tuning of Llama-style models"};
  app.require_subcommand(1);
  InitModelArgs init_model;
  add_init_model(app, init_model);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const fe::Error& e) {
    std::cerr << "fedengine: error: " << e.what() << "\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::cerr << "fedengine: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
