// tokenizer/tokenizer.h — text ↔ token ids.
//
// A leaf module (depends on nothing else of fedengine). Two kinds of tokenizer behind one interface:
// - HF `tokenizer.json` (the `tokenizers` library's format: Llama 3, Qwen2, SmolLM2, Mistral,
//   TinyLlama, ...): normalizer → pre-tokenizer → BPE model → decoder, with added/special tokens
//   matched in the text first (hf_*.h say which components are supported);
// - SentencePiece `tokenizer.model` (Llama-2 style: BOS/EOS pieces, byte fallback).
// Either kind reads what the model directory says beside the file (tokenizer_config.h): the
// special tokens and BOS/EOS flags, clean_up_tokenization_spaces, and the chat template.
// encode() adds no BOS/EOS; callers decide where those go (add_bos()/add_eos() say what the model
// expects for a single sequence). Errors throw std::runtime_error whose message names the file.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fe {

class ChatTemplate;
struct TokenizerConfig;

// The special tokens a tokenizer uses for a single sequence.
struct SpecialTokens {
  int32_t bos_id = -1, eos_id = -1, pad_id = -1;  // -1: none
  bool add_bos = false, add_eos = false;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // `path` is a tokenizer.json, a tokenizer.model, or a model directory holding either (a
  // directory with both is read through tokenizer.json, which carries the added tokens and the
  // post-processor). Either kind also reads, from the directory of that file, tokenizer_config.json
  // and chat_template.jinja / chat_template.json when present (TokenizerConfig::read_directory).
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  // The file load(dir) reads: DIR/tokenizer.json, else DIR/tokenizer.model; "" when neither exists.
  static std::string file_in(const std::string& dir);

  // Whether the model directory has a chat template (chat_template.jinja, chat_template.json or
  // tokenizer_config.json's chat_template), whether or not our Jinja subset can parse it.
  bool has_chat_template() const;
  // HF's apply_chat_template(messages, add_generation_prompt=..., tokenize=False, **extra): the
  // template rendered with `messages` (a JSON list of {"role", "content"}), the special tokens'
  // strings (bos_token, eos_token, unk_token, pad_token) and the keys of `extra_context` (a JSON
  // object: tools, documents, enable_thinking, ...; they replace the special tokens' strings, as
  // keyword arguments do in transformers; "messages" and "add_generation_prompt" are arguments,
  // not keys). std::runtime_error when there is no template, and, naming the template's origin,
  // when the template does not parse (it is parsed only here, as transformers compiles it only
  // then, so a template our Jinja subset rejects leaves encode/decode usable) or fails to render.
  std::string apply_chat_template(const nlohmann::ordered_json& messages, bool add_generation_prompt) const;
  std::string apply_chat_template(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                  const nlohmann::ordered_json& extra_context) const;

  // tokenizer.json: ids exactly as HF's `encode(text, add_special_tokens=False).ids` — special and
  // added tokens written in the text are matched as single ids. Text must be valid UTF-8.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // The text transformers' `decode(ids, skip_special_tokens)` gives: the tokenizer's own decoding
  // (HF tokenizers' decode; SentencePiece's, special pieces written as their text when kept), then,
  // when tokenizer_config.json sets clean_up_tokenization_spaces, transformers'
  // clean_up_tokenization (" ." → ".", " ?" → "?", " !" → "!", " ," → ",", " ' " → "'",
  // " n't" → "n't", " 'm" → "'m", " 's" → "'s", " 've" → "'ve", " 're" → "'re", in that order).
  // Ids outside [0, vocab_size()) are an error.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = true) const;
  // One past the largest id, added tokens included.
  virtual int64_t vocab_size() const = 0;
  // tokenizer.json: from tokenizer_config.json's bos_token / eos_token / pad_token when present,
  // else BOS (EOS) from the special token the post-processor puts before (after) a single
  // sequence, PAD from the file's padding settings. tokenizer.model: the config's tokens when
  // present, else the model's own ids.
  int32_t bos_id() const { return special_.bos_id; }  // -1 when the model has none
  int32_t eos_id() const { return special_.eos_id; }  // -1 when the model has none
  int32_t pad_id() const { return special_.pad_id; }  // -1 when the model has none
  // A token's text (ids outside [0, vocab_size()) are an error).
  std::string id_to_piece(int32_t id) const;
  // The id of a token's exact string (added tokens included), nullopt when there is none.
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  // Whether a single sequence starts with BOS / ends with EOS by default (tokenizer_config.json's
  // add_bos_token / add_eos_token, else what the post-processor adds; SentencePiece: BOS, no EOS).
  // Never true when the id is -1.
  bool add_bos() const { return special_.add_bos; }
  bool add_eos() const { return special_.add_eos; }
  // The file the tokenizer was read from, as errors name it ("" for one built in memory).
  const std::string& file() const { return file_; }

 protected:
  explicit Tokenizer(std::string file) : file_(std::move(file)) {}
  // Set once by the concrete tokenizer, when its vocabulary can answer token_to_id.
  void set_special_tokens(const SpecialTokens& special) { special_ = special; }
  // A std::runtime_error "tokenizer: FILE: what".
  [[noreturn]] void fail(const std::string& what) const;

  // decode() and id_to_piece() before the clean-up, for ids already checked against vocab_size().
  virtual std::string decode_ids(std::span<const int32_t> ids, bool skip_special_tokens) const = 0;
  virtual std::string piece_of(int32_t id) const = 0;

 private:
  // Ids can come from a model whose embedding table is larger than the vocabulary.
  void check_id(int32_t id) const;

  // What load() takes from the directory's config once the tokenizer exists (tokenizer_chat.cpp):
  // the chat template's source, the special tokens' strings, the clean-up flag.
  void attach_config(const TokenizerConfig& config);

  std::string file_;
  SpecialTokens special_;
  std::optional<std::string> chat_template_source_;
  std::string chat_template_origin_;
  mutable std::once_flag chat_template_parsed_;                             // set once a parse succeeds
  mutable std::shared_ptr<const ChatTemplate> chat_template_;               // the parse, once done
  std::vector<std::pair<std::string, std::string>> special_token_strings_;  // {"bos_token", "<s>"}, ...
  bool clean_up_tokenization_spaces_ = false;
};

// Trains a Llama-2-style SentencePiece model on a text file (one sentence a line): BPE, byte
// fallback, <unk> = 0, <s> = 1, </s> = 2, every character of the corpus kept. Writes model_path
// (a tokenizer.model). vocab_size includes the 256 byte pieces, so it must exceed ~260 plus the
// corpus' distinct characters.
void train_sentencepiece(const std::string& corpus_file, const std::string& model_path, int vocab_size);

}  // namespace fe
