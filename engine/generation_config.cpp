#include "engine/generation_config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fe {

std::vector<int32_t> stop_ids(const std::string& model_dir, const LlamaConfig& model_config,
                              const Tokenizer* tokenizer) {
  std::vector<int32_t> ids;
  const auto add = [&ids](int64_t id) {
    if (id >= 0 && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(static_cast<int32_t>(id));
  };
  const std::filesystem::path file = std::filesystem::path(model_dir) / "generation_config.json";
  bool from_file = false;
  if (std::filesystem::exists(file)) {
    std::ifstream in(file);
    const nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
    if (config.is_discarded() || !config.is_object())
      throw Error(file.string() + ": not a JSON object (HF's generation_config.json); fix or remove the file");
    const auto eos = config.find("eos_token_id");
    from_file = eos != config.end();
    if (from_file && !eos->is_null()) {
      const bool valid = eos->is_number_integer() ||
                         (eos->is_array() && std::all_of(eos->begin(), eos->end(), [](const nlohmann::json& v) {
                            return v.is_number_integer();
                          }));
      if (!valid)
        throw Error(file.string() + ": \"eos_token_id\" should be a token id or a list of them, got " + eos->dump());
      if (eos->is_array())
        for (const auto& id : *eos) add(id.get<int64_t>());
      else
        add(eos->get<int64_t>());
    }
  }
  if (!from_file)
    for (const int64_t id : model_config.eos_token_ids) add(id);
  if (tokenizer) add(tokenizer->eos_id());
  return ids;
}

}  // namespace fe
