// tokenizer/sentencepiece_tokenizer.cpp — Tokenizer over libsentencepiece (Llama-2 `tokenizer.model`).
//
// The model's own normalizer and flags (byte fallback, dummy prefix, whitespace handling) are used
// as trained, so ids match the reference `spm_encode` / Python sentencepiece exactly on text. As
// transformers' tokenizers do (and spm_encode does not), the special pieces' strings written in
// the text ("</s>" after a chat template's answer) are matched as their ids first, and the text
// between them is encoded piece by piece.

#include "tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>

#include "tokenizer/hf_added_tokens.h"
#include "tokenizer/tokenizer_config.h"

namespace fe {
namespace {

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw std::runtime_error("tokenizer: " + file + ": " + what);
}

std::string read_file(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(file, "cannot open for reading");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(file, "read error");
  return bytes;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(std::string model_file, const TokenizerConfig& config) : Tokenizer(std::move(model_file)) {
    // Parsing the bytes ourselves (rather than processor_.Load(path)) keeps the I/O errors above
    // ours; any status failure here means the bytes are not a usable SentencePiece model.
    const auto status = processor_.LoadFromSerializedProto(read_file(file()));
    if (!status.ok()) {
      fail("not a SentencePiece model (" + status.ToString() +
           "); expected a SentencePiece tokenizer.model or an HF tokenizer.json");
    }
    std::vector<hf::AddedToken> special;
    for (int id = 0; id < processor_.GetPieceSize(); ++id)
      if (processor_.IsControl(id) || processor_.IsUnknown(id))
        special.push_back({.id = id, .content = processor_.IdToPiece(id), .special = true, .normalized = false});
    special_pieces_ = hf::AddedVocabulary(std::move(special), nullptr);
    const SpecialTokens from_model{.bos_id = processor_.bos_id(),
                                   .eos_id = processor_.eos_id(),
                                   .pad_id = processor_.pad_id(),
                                   .add_bos = true,
                                   .add_eos = false};
    set_special_tokens(config.special_tokens(
        from_model, [this](std::string_view token) { return token_to_id(token); }, file()));
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    for (const hf::TextSpan& span : special_pieces_.split_raw(text)) {
      if (span.id >= 0) {
        ids.push_back(span.id);
        continue;
      }
      std::vector<int> piece_ids;
      check(processor_.Encode(text.substr(span.begin, span.end - span.begin), &piece_ids), "encode");
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
    return ids;
  }

  int64_t vocab_size() const override { return processor_.GetPieceSize(); }

  // SentencePiece answers unknown pieces with the unk id; only the unk piece itself has it.
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    const int id = processor_.PieceToId(token);
    if (id < 0 || (id == processor_.unk_id() && processor_.IdToPiece(id) != token)) return std::nullopt;
    return id;
  }

 protected:
  std::string piece_of(int32_t id) const override { return processor_.IdToPiece(id); }

  // SentencePiece renders control pieces (BOS, EOS, PAD) as empty text and reassembles
  // byte-fallback pieces into UTF-8 (invalid sequences become U+FFFD). Keeping special tokens
  // writes each control piece as its text ("<s>"); the runs between them are decoded as above.
  std::string decode_ids(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    if (skip_special_tokens) return decode_pieces(ids);
    std::string text;
    size_t run_begin = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!processor_.IsControl(ids[i])) continue;
      text += decode_pieces(ids.subspan(run_begin, i - run_begin));
      text += processor_.IdToPiece(ids[i]);
      run_begin = i + 1;
    }
    return text + decode_pieces(ids.subspan(run_begin));
  }

 private:
  std::string decode_pieces(std::span<const int32_t> ids) const {
    std::string text;
    check(processor_.Decode(std::vector<int>(ids.begin(), ids.end()), &text), "decode");
    return text;
  }

  void check(const sentencepiece::util::Status& status, const char* operation) const {
    if (!status.ok()) fail(std::string(operation) + " failed: " + status.ToString());
  }

  sentencepiece::SentencePieceProcessor processor_;
  hf::AddedVocabulary special_pieces_;  // control and unknown pieces, by their text
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& model_file, const TokenizerConfig& config) {
  return std::make_unique<SentencePieceTokenizer>(model_file, config);
}

}  // namespace fe
