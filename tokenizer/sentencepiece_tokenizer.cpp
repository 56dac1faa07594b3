// tokenizer/sentencepiece_tokenizer.cpp — Tokenizer over libsentencepiece (Llama-2 `tokenizer.model`).
//
// The model's own normalizer and flags (byte fallback, dummy prefix, whitespace handling) are used
// as trained, so ids match the reference `spm_encode` / Python sentencepiece exactly.

#include <sentencepiece_processor.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>

#include "tokenizer/tokenizer.h"

namespace fe {
namespace {

namespace fs = std::filesystem;

constexpr const char* kModelFileName = "tokenizer.model";

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw std::runtime_error("tokenizer: " + file + ": " + what);
}

// A directory stands for the tokenizer.model inside it (the layout of HF model directories).
std::string resolve_model_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, "no such file or directory");
  if (!fs::is_directory(path, ec)) return path;
  const fs::path model_file = fs::path(path) / kModelFileName;
  if (!fs::is_regular_file(model_file, ec)) fail(path, std::string("directory holds no ") + kModelFileName);
  return model_file.string();
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
  explicit SentencePieceTokenizer(std::string model_file) : model_file_(std::move(model_file)) {
    // Parsing the bytes ourselves (rather than processor_.Load(path)) keeps the I/O errors above
    // ours; any status failure here means the bytes are not a usable SentencePiece model.
    const auto status = processor_.LoadFromSerializedProto(read_file(model_file_));
    if (!status.ok()) fail(model_file_, "not a SentencePiece model (" + status.ToString() + ")");
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    check(processor_.Encode(text, &ids), "encode");
    return {ids.begin(), ids.end()};
  }

  // SentencePiece renders control pieces (BOS, EOS, PAD) as empty text, and reassembles
  // byte-fallback pieces into UTF-8 (invalid sequences become U+FFFD).
  std::string decode(std::span<const int32_t> ids) const override {
    for (const int32_t id : ids) check_id(id);
    std::string text;
    check(processor_.Decode(std::vector<int>(ids.begin(), ids.end()), &text), "decode");
    return text;
  }

  int64_t vocab_size() const override { return processor_.GetPieceSize(); }
  int32_t bos_id() const override { return processor_.bos_id(); }
  int32_t eos_id() const override { return processor_.eos_id(); }
  int32_t pad_id() const override { return processor_.pad_id(); }

  std::string id_to_piece(int32_t id) const override {
    check_id(id);  // SentencePiece does not range-check here
    return processor_.IdToPiece(id);
  }

 private:
  // Ids can come from a model whose embedding table is larger than the vocabulary.
  void check_id(int32_t id) const {
    if (id < 0 || id >= vocab_size()) {
      fail(model_file_, "token id " + std::to_string(id) + " outside the vocabulary [0, " +
                            std::to_string(vocab_size()) + ")");
    }
  }

  void check(const sentencepiece::util::Status& status, const char* operation) const {
    if (!status.ok()) fail(model_file_, std::string(operation) + " failed: " + status.ToString());
  }

  std::string model_file_;
  sentencepiece::SentencePieceProcessor processor_;
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(resolve_model_file(path));
}

}  // namespace fe
