// tokenizer/tokenizer.cpp — Tokenizer::load: which kind of tokenizer a path holds.

#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"

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

// `path` is a file or a directory holding one.
std::unique_ptr<Tokenizer> load_by_kind(const std::string& path) {
  std::error_code error;
  if (!fs::exists(path, error)) fail(path, std::string("no such file or directory (") + kExpected + ")");
  if (fs::is_directory(path, error)) {
    if (const std::string file = Tokenizer::file_in(path); !file.empty()) return load_by_kind(file);
    fail(path, std::string("directory holds neither ") + kHfFileName + " (HF tokenizers) nor " +
                   kSentencePieceFileName +
                   " (SentencePiece); copy the model's tokenizer file into it, or point `tokenizer:` at the file");
  }
  return is_json_file(path) ? load_hf_tokenizer(path) : load_sentencepiece_tokenizer(path);
}

}  // namespace

std::string Tokenizer::file_in(const std::string& dir) {
  std::error_code error;
  for (const char* name : {kHfFileName, kSentencePieceFileName})
    if (fs::is_regular_file(fs::path(dir) / name, error)) return (fs::path(dir) / name).string();
  return "";
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::unique_ptr<Tokenizer> tokenizer = load_by_kind(path);
  std::error_code error;
  tokenizer->attach_chat_template(fs::is_directory(path, error) ? file_in(path) : path);
  return tokenizer;
}

}  // namespace fe
