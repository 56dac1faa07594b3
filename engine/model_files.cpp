#include "engine/model_files.h"

#include <filesystem>

#include "tokenizer/tokenizer.h"

namespace fe {

void copy_model_companion_files(const std::string& model_dir, const std::string& tokenizer_path,
                                const std::string& to_dir) {
  namespace fs = std::filesystem;
  const auto copy = [&](const fs::path& file) {
    std::error_code error;
    if (fs::is_regular_file(file, error) && !fs::equivalent(file.parent_path(), to_dir, error))
      fs::copy_file(file, fs::path(to_dir) / file.filename(), fs::copy_options::overwrite_existing);
  };
  if (!tokenizer_path.empty()) {
    const fs::path tokenizer =
        fs::is_directory(tokenizer_path) ? fs::path(Tokenizer::file_in(tokenizer_path)) : fs::path(tokenizer_path);
    if (!tokenizer.empty()) {
      // Under the name load() looks for in a directory, whatever the file was called.
      const char* name = tokenizer.extension() == ".model" ? "tokenizer.model" : "tokenizer.json";
      if (!fs::exists(fs::path(to_dir) / name) || !fs::equivalent(tokenizer, fs::path(to_dir) / name))
        fs::copy_file(tokenizer, fs::path(to_dir) / name, fs::copy_options::overwrite_existing);
      copy(tokenizer.parent_path() / "tokenizer_config.json");
      copy(tokenizer.parent_path() / "special_tokens_map.json");
    }
  }
  copy(fs::path(model_dir) / "generation_config.json");
}

}  // namespace fe
