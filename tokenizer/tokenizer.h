// tokenizer/tokenizer.h — text ↔ token ids.
//
// A leaf module (depends on nothing else of fedengine). Two kinds of tokenizer behind one interface:
// - HF `tokenizer.json` (the `tokenizers` library's format: Llama 3, Qwen2, SmolLM2, Mistral,
//   TinyLlama, ...): normalizer → pre-tokenizer → BPE model → decoder, with added/special tokens
//   matched in the text first (hf_*.h say which components are supported);
// - SentencePiece `tokenizer.model` (Llama-2 style: BOS/EOS pieces, byte fallback).
// encode() adds no BOS/EOS; callers decide where those go (add_bos()/add_eos() say what the model
// expects for a single sequence). Errors throw std::runtime_error whose message names the file.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fe {

class ChatTemplate;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // `path` is a tokenizer.json, a tokenizer.model, or a model directory holding either (a
  // directory with both is read through tokenizer.json, which carries the added tokens and the
  // post-processor). A tokenizer.json reads the tokenizer_config.json beside it when there is one.
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  // The file load(dir) reads: DIR/tokenizer.json, else DIR/tokenizer.model; "" when neither exists.
  static std::string file_in(const std::string& dir);

  // The chat template of the tokenizer_config.json beside the file load() read (HF keeps it with
  // the tokenizer); null when there is none.
  const ChatTemplate* chat_template() const { return chat_template_.get(); }
  // HF's apply_chat_template(messages, add_generation_prompt, tokenize=False): the template
  // rendered with `messages` (a JSON list of {"role", "content"}) and the special tokens' strings
  // (bos_token, eos_token, unk_token, pad_token). std::runtime_error when there is no template.
  std::string apply_chat_template(const nlohmann::ordered_json& messages, bool add_generation_prompt) const;

  // tokenizer.json: ids exactly as HF's `encode(text, add_special_tokens=False).ids` — special and
  // added tokens written in the text are matched as single ids. Text must be valid UTF-8.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // As decode(ids, true): control/special tokens are dropped from the text.
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  // HF's `decode(ids, skip_special_tokens)`. Ids outside [0, vocab_size()) are an error. A
  // tokenizer that does not override it drops control tokens either way.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
    (void)skip_special_tokens;
    return decode(ids);
  }
  // One past the largest id, added tokens included.
  virtual int64_t vocab_size() const = 0;
  // tokenizer.json: from tokenizer_config.json's bos_token / eos_token / pad_token when present,
  // else BOS (EOS) from the special token the post-processor puts before (after) a single
  // sequence, PAD from the file's padding settings.
  virtual int32_t bos_id() const = 0;  // -1 when the model has none
  virtual int32_t eos_id() const = 0;  // -1 when the model has none
  virtual int32_t pad_id() const = 0;  // -1 when the model has none
  virtual std::string id_to_piece(int32_t id) const = 0;
  // The id of a token's exact string (added tokens included), nullopt when there is none.
  virtual std::optional<int32_t> token_to_id(std::string_view token) const {
    (void)token;
    return std::nullopt;
  }
  // Whether a single sequence starts with BOS / ends with EOS by default (tokenizer_config.json's
  // add_bos_token / add_eos_token, else what the post-processor adds; SentencePiece: BOS, no EOS).
  // Never true when the id is -1.
  virtual bool add_bos() const { return bos_id() >= 0; }
  virtual bool add_eos() const { return false; }

 private:
  // Reads the tokenizer_config.json beside `file` (the file load() read) for the chat template.
  void attach_chat_template(const std::string& file);

  std::shared_ptr<const ChatTemplate> chat_template_;
  std::vector<std::pair<std::string, std::string>> special_token_strings_;  // {"bos_token", "<s>"}, ...
};

// Trains a Llama-2-style SentencePiece model on a text file (one sentence a line): BPE, byte
// fallback, <unk> = 0, <s> = 1, </s> = 2, every character of the corpus kept. Writes model_path
// (a tokenizer.model). vocab_size includes the 256 byte pieces, so it must exceed ~260 plus the
// corpus' distinct characters.
void train_sentencepiece(const std::string& corpus_file, const std::string& model_path, int vocab_size);

}  // namespace fe
