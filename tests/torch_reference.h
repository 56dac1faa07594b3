// tests/torch_reference.h — the float64 PyTorch reference of HF Llama / Mistral / Qwen2 + PEFT LoRA
// (tests/reference/llama_reference.py, Debian's python3-torch), run on files the test wrote.
//
// A test that needs it starts with FE_NEED_TORCH(): without torch it skips and says why, unless
// FE_REQUIRE_TORCH=1 (scripts/test.sh sets it) makes that a failure.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "engine/safetensors.h"
#include "tests/reference_env.h"

namespace fe::test {

inline const char* torch_python() { return "/usr/bin/python3"; }

inline bool torch_available() {
  static const bool available =
      std::system((std::string(torch_python()) + " -c 'import torch, numpy' >/dev/null 2>&1").c_str()) == 0;
  return available;
}

// Logits [B, T, V], the loss and the gradient of every LoRA tensor ("grad.<name>"), all f64, of
// the model directory with the PEFT adapter on the batch (a safetensors file with input_ids and
// labels), written to work_dir/reference.safetensors. Throws std::runtime_error with the script's
// output when it fails.
inline SafetensorsCheckpoint run_llama_reference(const std::string& model_dir, const std::string& adapter_dir,
                                                 const std::string& batch_file, const std::string& work_dir) {
  const std::string out = work_dir + "/reference.safetensors", log = work_dir + "/reference.log";
  const std::string command = std::string("OMP_NUM_THREADS=1 ") + torch_python() +
                              " " FE_SOURCE_DIR "/tests/reference/llama_reference.py --model " + model_dir +
                              " --adapter " + adapter_dir + " --batch " + batch_file + " --out " + out + " > " + log +
                              " 2>&1";
  if (std::system(command.c_str()) != 0) {
    std::ifstream in(log);
    throw std::runtime_error("the reference script failed:\n" + command + "\n" +
                             std::string(std::istreambuf_iterator<char>(in), {}));
  }
  return SafetensorsCheckpoint(out);
}

}  // namespace fe::test

#define FE_NEED_TORCH()                                                                                           \
  FE_NEED_OR_SKIP(::fe::test::torch_available(),                                                                  \
                  std::string(::fe::test::torch_python()) + " cannot import torch and numpy", "FE_REQUIRE_TORCH", \
                  "Debian: python3-torch python3-numpy, scripts/setup.sh")
