// fed/server_checkpoint.h — what the server keeps after each round, so that `--resume` continues
// from the last completed round with the same result, bit for bit.
//
// OUTPUT/checkpoint/ holds adapter/ (the global adapter, PEFT), strategy.safetensors (the
// strategy's state, when it has one), privacy.safetensors (with DP: the mechanism's state) and
// state.json {"round", "strategy", "dp_sampling_rates", "run_id", "volumes": {name: {"examples",
// "free_memory_bytes"}}, "metrics": the round's metrics.jsonl line (written after the checkpoint;
// a resumed run restores it when a kill came in between, fed/round_report.h)}. It is written aside and swapped in, so
// one complete checkpoint exists at every moment: checkpoint/, or checkpoint.old/ while checkpoint/ is being replaced
// (loading falls back to it).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/lora.h"
#include "fed/partition.h"
#include "fed/privacy.h"
#include "fed/strategy.h"

namespace fe::fed {

struct ServerCheckpoint {
  int64_t round = 0;   // the last completed round
  std::string run_id;  // empty when the checkpoint has none
  std::map<std::string, ParticipantVolume> volumes;
  nlohmann::json metrics_line;  // null when the checkpoint has none
};

// `dp` is the strategy itself when DP wraps it, else null.
void save_server_checkpoint(const std::filesystem::path& dir, const ServerCheckpoint& checkpoint,
                            const LoraAdapter& global, const std::string& model_dir, const Strategy& strategy,
                            const DpStrategy* dp);

// Restores the global adapter, the strategy's state and DP's into the objects given. Error naming
// the directory when there is no checkpoint or it was made with another strategy.
ServerCheckpoint load_server_checkpoint(const std::filesystem::path& dir, const LlamaConfig& model, LoraAdapter& global,
                                        Strategy& strategy, DpStrategy* dp);

}  // namespace fe::fed
