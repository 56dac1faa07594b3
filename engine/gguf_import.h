// engine/gguf_import.h — a GGUF of the llama family turned into an HF checkpoint directory.
//
// import_gguf writes into OUT_DIR:
//   config.json             HF config from the ARCH.* metadata: model_type "llama"
//                           (LlamaForCausalLM) or "qwen2" (Qwen2ForCausalLM, q/k/v biases); other
//                           architectures are an error naming the supported ones. Float metadata
//                           (stored as f32) is written as its shortest decimal (1e-05, 100000.0).
//                           tie_word_embeddings = the GGUF has no output.weight. A rope_freqs.weight
//                           tensor (how llama.cpp stores Llama 3.1's rope scaling) is turned back into
//                           rope_scaling {rope_type: llama3, ...}: the factor is its largest entry,
//                           the transition band is fitted with low_freq_factor = 1 (only two of the
//                           three band parameters are identifiable, and Llama 3.x uses 1), and the
//                           result must reproduce every entry of the tensor or the import fails.
//   model.safetensors       every tensor dequantized (engine/gguf_dequantize.h) under its HF name,
//                           stored as f32 or bf16. For "llama", q_proj and k_proj rows (and their
//                           biases) are put back in HF order: llama.cpp's convert_hf_to_gguf.py
//                           interleaves the two rotary halves of each head (row i·hd/2 + j of a head
//                           goes to row 2j + i), the layout of its own RoPE kernel; qwen2 files are
//                           not permuted.
//   tokenizer.json          the HF `tokenizers` pipeline rebuilt from tokenizer.ggml.*: model "gpt2"
//                           → byte-level BPE with the pre-tokenizer named by tokenizer.ggml.pre
//                           (gguf_pre_tokenizer_names()); model "llama" (SentencePiece) → BPE with byte
//                           fallback in the Llama 2 tokenizer.json style, merges derived from the
//                           piece scores as transformers' SentencePiece converter does. Control
//                           tokens become special added tokens, user-defined ones plain added tokens.
//   tokenizer_config.json   bos/eos/pad/unk strings, add_bos_token/add_eos_token, chat_template,
//                           model_max_length.
//   generation_config.json  bos/eos (with eot/eom ids, when the GGUF names them) and pad ids.
// Each file is written whole (PATH.tmp renamed over PATH), config.json last, so an interrupted
// import never leaves a half-written file. Errors are fe::Error naming the file and the key or
// tensor. The hyper-parameters are checked against the tensors that embody them (block_count against
// the blk.N tensors, head counts × head dimension against the attn_q/attn_k rows, the MLP width
// against ffn_gate) before anything is computed from them, so a hostile value is an error naming its
// key rather than an overflow or a plan of 2^40 layers.
#pragma once

#include <cstddef>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "engine/gguf.h"
#include "kernels/view.h"

namespace fe {

struct GgufImportOptions {
  DType dtype = DType::f32;  // storage dtype of model.safetensors: f32 or bf16
  // Called before each tensor is converted (index from 0): for progress output.
  std::function<void(size_t index, size_t count, const std::string& hf_name, const std::string& gguf_type)> on_tensor;
};

struct GgufImportSummary {
  std::string architecture;  // "llama" or "qwen2"
  size_t tensors = 0;        // written to model.safetensors
  int64_t parameters = 0;
  std::vector<std::string> notes;  // what was derived rather than read (rope scaling)
};

GgufImportSummary import_gguf(const std::string& gguf_path, const std::string& out_dir,
                              const GgufImportOptions& options = {});

// The pieces import_gguf writes, for callers that need only the metadata.
// config.json; `notes` (optional) collects what was derived.
nlohmann::json gguf_hf_config(const GgufFile& file, std::vector<std::string>* notes = nullptr);

// tokenizer.json, tokenizer_config.json and generation_config.json from tokenizer.ggml.* and
// tokenizer.chat_template.
nlohmann::json gguf_hf_tokenizer(const GgufFile& file);
nlohmann::json gguf_hf_tokenizer_config(const GgufFile& file);
nlohmann::json gguf_hf_generation_config(const GgufFile& file);

// The tokenizer.ggml.pre values the gpt2 tokenizer model understands, for messages and --help.
std::string gguf_pre_tokenizer_names();

}  // namespace fe
