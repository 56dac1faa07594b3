// tokenizer/train_sentencepiece.cpp — tokenizers for the project's own synthetic corpora.
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "tokenizer/tokenizer.h"

namespace fe {

void train_sentencepiece(const std::string& corpus_file, const std::string& model_path, int vocab_size) {
  namespace fs = std::filesystem;
  const std::string prefix = model_path + ".training";
  // As a map rather than a command line: SentencePiece echoes a command line on stderr ("LOG(INFO)
  // Running command: ...") before it reads the minloglevel that would silence it.
  const std::unordered_map<std::string, std::string> options = {
      {"input", corpus_file},    {"model_prefix", prefix},
      {"model_type", "bpe"},     {"vocab_size", std::to_string(vocab_size)},
      {"byte_fallback", "true"}, {"character_coverage", "1.0"},
      {"unk_id", "0"},           {"bos_id", "1"},
      {"eos_id", "2"},           {"pad_id", "-1"},
      {"minloglevel", "2"}};
  const auto status = sentencepiece::SentencePieceTrainer::Train(options);
  if (!status.ok()) throw std::runtime_error("tokenizer: training on " + corpus_file + " failed: " + status.ToString());
  fs::rename(prefix + ".model", model_path);
  fs::remove(prefix + ".vocab");
}

}  // namespace fe
