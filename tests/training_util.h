// tests/training_util.h — what the trainer tests train: an adapter on every projection whose B
// is not zero (so the LoRA branch contributes from the first step) and batches whose rows carry
// different numbers of label tokens (so a wrong per-micro-batch or per-rank normalisation shows).
#pragma once

#include "engine/dataset.h"
#include "engine/lora.h"
#include "engine/rng.h"

namespace fe::test {

inline LoraAdapter lora_on_every_projection(const LlamaConfig& c, DType dtype) {
  LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8;
  lc.targets.assign(kAllProj.begin(), kAllProj.end());
  LoraAdapter lora = LoraAdapter::init(c, lc, 7, dtype);
  Rng rng(8);
  for (auto& [name, t] : lora.named_tensors())
    if (name.find("lora_B") != std::string::npos) rng.fill_normal(t, 0.0, 0.05);
  return lora;
}

// Row r masks its first 2 + 2r positions.
inline Batch random_batch(int64_t rows, int64_t seq, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  Batch b{Tensor::empty(Shape{rows, seq}, DType::i32), Tensor::empty(Shape{rows, seq}, DType::i32)};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < seq; ++t) {
      const int64_t i = r * seq + t;
      b.input_ids.as<int32_t>()[i] = static_cast<int32_t>(rng.next_u64() % vocab);
      b.labels.as<int32_t>()[i] = t < 2 + r * 2 ? -100 : b.input_ids.as<int32_t>()[i];
    }
  return b;
}

}  // namespace fe::test
