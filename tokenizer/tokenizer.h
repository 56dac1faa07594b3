// tokenizer/tokenizer.h — text ↔ token ids.
//
// A leaf module (depends on nothing else of fedengine). Today: SentencePiece models
// (`tokenizer.model`, Llama-2 style: BOS/EOS pieces, byte fallback). encode() adds no BOS/EOS;
// callers decide where those go (the dataset code does). Errors throw std::runtime_error whose
// message names the file.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fe {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // `path` is a tokenizer.model file or a model directory that holds one.
  static std::unique_ptr<Tokenizer> load(const std::string& path);

  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Control tokens (BOS, EOS, PAD) are dropped from the text.
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when the model has none
  virtual int32_t eos_id() const = 0;  // -1 when the model has none
  virtual int32_t pad_id() const = 0;  // -1 when the model has none
  virtual std::string id_to_piece(int32_t id) const = 0;
};

// Trains a Llama-2-style SentencePiece model on a text file (one sentence a line): BPE, byte
// fallback, <unk> = 0, <s> = 1, </s> = 2, every character of the corpus kept. Writes model_path
// (a tokenizer.model). vocab_size includes the 256 byte pieces, so it must exceed ~260 plus the
// corpus' distinct characters.
void train_sentencepiece(const std::string& corpus_file, const std::string& model_path, int vocab_size);

}  // namespace fe
