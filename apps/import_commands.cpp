// import-gguf: a llama.cpp GGUF turned into an HF checkpoint directory.
#include <unistd.h>

#include <chrono>
#include <iostream>

#include "apps/commands.h"
#include "engine/gguf_dequantize.h"
#include "engine/gguf_import.h"

namespace fe::cli {

void add_import_gguf(CLI::App& app) {
  struct Args {
    std::string gguf, out, dtype = "f32";
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "import-gguf",
      "Convert a GGUF file (llama.cpp's format) of the Llama family into an HF checkpoint directory that every\n"
      "fedengine command reads. OUT gets:\n"
      "  config.json             architecture and hyper-parameters from the GGUF metadata (model_type llama or\n"
      "                          qwen2; rope scaling linear, or llama3 recovered from rope_freqs.weight)\n"
      "  model.safetensors       every tensor dequantized to f32 (or bf16 with --dtype bf16) under its HF name;\n"
      "                          the q/k row order llama.cpp's converter applies to llama models is undone\n"
      "  tokenizer.json          the HF tokenizer rebuilt from tokenizer.ggml.*: byte-level BPE (tokenizer model\n"
      "                          gpt2, pre-tokenizer from tokenizer.ggml.pre) or SentencePiece-style BPE with byte\n"
      "                          fallback (tokenizer model llama)\n"
      "  tokenizer_config.json   special tokens, add_bos/add_eos and the chat template\n"
      "  generation_config.json  bos, eos (and end-of-turn) and pad ids\n"
      "Tensor types: " +
          std::string(dequantizable_type_names()) +
          ".\n"
          "Other quantizations (Q2_K, Q3_K, IQ*) are refused with the tensor's name: requantize with llama-quantize.\n"
          "Known tokenizer.ggml.pre values: " +
          gguf_pre_tokenizer_names() +
          ".\n"
          "Every file is written whole (renamed into place), so an interrupted import leaves no half file.");
  cmd->add_option("gguf", args->gguf, "the .gguf file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out, "output directory (created if needed)")->required();
  cmd->add_option("--dtype", args->dtype, "storage dtype of model.safetensors: f32 or bf16")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->callback([args] {
    GgufImportOptions options;
    options.dtype = args->dtype == "bf16" ? DType::bf16 : DType::f32;
    // On a terminal one line is rewritten in place; in a log each tensor gets its line.
    const bool terminal = ::isatty(STDERR_FILENO) != 0;
    options.on_tensor = [terminal](size_t index, size_t count, const std::string& name, const std::string& type) {
      std::cerr << (terminal ? "\r" : "") << "import-gguf: tensor " << index + 1 << " of " << count << " (" << type
                << ") " << name << (terminal ? "\x1b[K" : "\n") << std::flush;
    };
    const auto start = std::chrono::steady_clock::now();
    const GgufImportSummary summary = import_gguf(args->gguf, args->out, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (terminal) std::cerr << "\n";
    for (const std::string& note : summary.notes) std::cerr << "import-gguf: " << note << "\n";
    std::cout << "wrote " << args->out << ": " << summary.architecture << ", " << summary.tensors << " tensors, "
              << summary.parameters << " parameters as " << args->dtype << " in " << seconds << " s\n";
  });
}

}  // namespace fe::cli
