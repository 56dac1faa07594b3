#include "fed/server_checkpoint.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/durable_file.h"
#include "engine/safetensors.h"

namespace fe::fed {

namespace fs = std::filesystem;

void save_server_checkpoint(const fs::path& dir, const ServerCheckpoint& checkpoint, const LoraAdapter& global,
                            const std::string& model_dir, const Strategy& strategy, const DpStrategy* dp) {
  DirectoryReplacement replacement(dir);
  const fs::path& staging = replacement.staging();
  global.save_peft((staging / "adapter").string(), model_dir);
  if (const NamedTensors state = strategy.state(); !state.empty())
    write_named_tensors((staging / "strategy.safetensors").string(), state);
  if (dp) write_named_tensors((staging / "privacy.safetensors").string(), dp->mechanism().state());
  nlohmann::json volumes = nlohmann::json::object();
  for (const auto& [name, volume] : checkpoint.volumes)
    volumes[name] = {{"examples", volume.examples}, {"free_memory_bytes", volume.free_memory_bytes}};
  const nlohmann::json state = {{"round", checkpoint.round},
                                {"strategy", strategy.name()},
                                {"dp_sampling_rates", dp ? dp->sampling_rates() : std::vector<double>{}},
                                {"run_id", checkpoint.run_id},
                                {"volumes", volumes},
                                {"metrics", checkpoint.metrics_line}};
  write_file_whole((staging / "state.json").string(), state.dump() + "\n");
  replacement.commit();
}

ServerCheckpoint load_server_checkpoint(const fs::path& checkpoint_dir, const LlamaConfig& model, LoraAdapter& global,
                                        Strategy& strategy, DpStrategy* dp) {
  const fs::path dir = completed_directory(checkpoint_dir);
  if (!fs::exists(dir / "state.json")) throw Error(dir.string() + ": no checkpoint to resume from");
  const auto state = nlohmann::json::parse(std::ifstream(dir / "state.json"));
  if (state.at("strategy") != strategy.name())
    throw Error(dir.string() + ": the checkpoint was made with strategy " + state.at("strategy").dump() +
                ", the config asks for " + strategy.name());
  global = LoraAdapter::load_peft((dir / "adapter").string(), model, DType::f32);
  if (fs::exists(dir / "strategy.safetensors"))
    strategy.load_state(read_named_tensors((dir / "strategy.safetensors").string()));
  if (dp)
    dp->load_privacy_state(read_named_tensors((dir / "privacy.safetensors").string()),
                           state.at("dp_sampling_rates").get<std::vector<double>>());
  ServerCheckpoint checkpoint{.round = state.at("round").get<int64_t>(),
                              .run_id = state.value("run_id", ""),
                              .metrics_line = state.value("metrics", nlohmann::json())};
  const nlohmann::json volumes = state.value("volumes", nlohmann::json::object());  // outlives the loop
  for (const auto& [name, volume] : volumes.items())
    checkpoint.volumes[name] = {volume.value("examples", int64_t{0}), volume.value("free_memory_bytes", 0.0)};
  return checkpoint;
}

}  // namespace fe::fed
