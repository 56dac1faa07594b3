#include "fed/preflight.h"

#include <filesystem>

#include "core/error.h"

namespace fe::fed {
namespace {

namespace fs = std::filesystem;

// "data.train" when the participant uses the top-level value, "participants[i].data.train" when
// its own entry overrides it.
std::string setting_key(const FederationConfig& config, const ParticipantConfig& p, const std::string& key,
                        bool overridden) {
  if (!overridden) return key;
  for (size_t i = 0; i < config.participants.size(); ++i)
    if (&config.participants[i] == &p) return "participants[" + std::to_string(i) + "]." + key;
  return key;
}

void require_exists(const FederationConfig& config, const ParticipantConfig& p, const std::string& path,
                    const std::string& shared_path, const std::string& key, const std::string& what) {
  if (path.empty() || fs::exists(path)) return;
  throw Error(config.path + ": participant " + p.name + ": " + what + " " + path + " (" +
              setting_key(config, p, key, path != shared_path) + ") does not exist");
}

}  // namespace

void require_shared_adapter(const FederationConfig& config, const ParticipantConfig& me) {
  const LoraConfig &mine = me.train.lora, &shared = config.shared.lora;
  if (me.train.full_parameter || mine.rank != shared.rank || mine.alpha != shared.alpha ||
      mine.use_rslora != shared.use_rslora || mine.targets != shared.targets)
    throw Error(config.path + ": participant " + me.name +
                " overrides the adapter section; every participant must train the same LoRA structure");
}

void check_participant_files(const FederationConfig& config, const ParticipantConfig& p) {
  const TrainConfig &mine = p.train, &shared = config.shared;
  require_exists(config, p, mine.model_dir, shared.model_dir, "model", "the base model");
  require_exists(config, p, mine.train_file, shared.train_file, "data.train", "the training data");
  require_exists(config, p, mine.tokenizer_path, shared.tokenizer_path, "tokenizer", "the tokenizer");
  require_exists(config, p, mine.init_adapter, shared.init_adapter, "adapter.init", "the initial adapter");
  require_shared_adapter(config, p);
}

void check_local_participants(const FederationConfig& config) {
  for (const ParticipantConfig& p : config.participants)
    for (const NodeConfig& node : p.nodes)
      if (is_local_host(node.host)) {
        check_participant_files(config, p);
        break;
      }
}

}  // namespace fe::fed
