// tokenizer/tokenizer.cpp — Tokenizer::load (which kind of tokenizer a path holds, and the config
// beside it) and decode's clean-up.

#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <utility>

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/tokenizer_config.h"

namespace fe {
namespace {

namespace fs = std::filesystem;

constexpr const char* kHfFileName = "tokenizer.json";
constexpr const char* kSentencePieceFileName = "tokenizer.model";
constexpr const char* kExpected =
    "expected a tokenizer.json (HF tokenizers), a tokenizer.model (SentencePiece), or a model directory holding one";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("tokenizer: " + path + ": " + what);
}

// tokenizer.json by name, or a file whose first non-blank byte opens a JSON object (a SentencePiece
// model is a protobuf, which never starts with '{').
bool is_json_file(const fs::path& file) {
  if (file.extension() == ".json") return true;
  std::ifstream in(file, std::ios::binary);
  for (char c; in.get(c);) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    return c == '{';
  }
  return false;
}

// The tokenizer file `path` means: itself, or the one its directory holds.
std::string tokenizer_file(const std::string& path) {
  std::error_code error;
  if (!fs::exists(path, error)) fail(path, std::string("no such file or directory (") + kExpected + ")");
  if (!fs::is_directory(path, error)) return path;
  if (std::string file = Tokenizer::file_in(path); !file.empty()) return file;
  fail(path, std::string("directory holds neither ") + kHfFileName + " (HF tokenizers) nor " + kSentencePieceFileName +
                 " (SentencePiece); copy the model's tokenizer file into it, or point `tokenizer:` at the file");
}

// transformers' PreTrainedTokenizerBase.clean_up_tokenization: Python's str.replace, one pattern
// after the other, each over the whole text from left to right without overlaps.
void clean_up_tokenization(std::string& text) {
  static constexpr std::pair<std::string_view, std::string_view> kReplacements[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
  };
  for (const auto& [from, to] : kReplacements) {
    size_t at = text.find(from);
    if (at == std::string::npos) continue;
    std::string out;
    out.reserve(text.size());
    size_t copied = 0;
    for (; at != std::string::npos; at = text.find(from, copied)) {
      out.append(text, copied, at - copied);
      out.append(to);
      copied = at + from.size();
    }
    out.append(text, copied);
    text = std::move(out);
  }
}

}  // namespace

std::string Tokenizer::file_in(const std::string& dir) {
  std::error_code error;
  for (const char* name : {kHfFileName, kSentencePieceFileName})
    if (fs::is_regular_file(fs::path(dir) / name, error)) return (fs::path(dir) / name).string();
  return "";
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  const std::string file = tokenizer_file(path);
  const TokenizerConfig config = TokenizerConfig::read_directory(fs::path(file).parent_path().string());
  std::unique_ptr<Tokenizer> tokenizer =
      is_json_file(file) ? load_hf_tokenizer(file, config) : load_sentencepiece_tokenizer(file, config);
  tokenizer->attach_config(config);
  return tokenizer;
}

void Tokenizer::fail(const std::string& what) const { throw std::runtime_error("tokenizer: " + file_ + ": " + what); }

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    fail("token id " + std::to_string(id) + " outside the vocabulary [0, " + std::to_string(vocab_size()) + ")");
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  check_id(id);
  return piece_of(id);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  for (const int32_t id : ids) check_id(id);
  std::string text = decode_ids(ids, skip_special_tokens);
  if (clean_up_tokenization_spaces_) clean_up_tokenization(text);
  return text;
}

}  // namespace fe
