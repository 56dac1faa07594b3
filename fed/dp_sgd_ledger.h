// fed/dp_sgd_ledger.h — DP-SGD's privacy spent by a participant over a run, one entry per round
// trained (sampling rate, noise multiplier, steps), kept in a file so that a restarted participant
// goes on counting where it stopped instead of from zero. A file of another run (another run_id)
// starts afresh.
//
// The file: {"run_id": ..., "rounds": [{"sampling_rate", "noise_multiplier", "steps"}, ...]},
// replaced whole on each add (engine/durable_file.h); it is first read on the first add.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/accountant.h"

namespace fe::fed {

class DpSgdLedger {
 public:
  explicit DpSgdLedger(std::filesystem::path file) : file_(std::move(file)) {}

  // Adds a round to run `run_id`'s ledger, writes it, and returns the ε spent for `delta`. A round
  // without noise or steps adds nothing.
  double add(const std::string& run_id, double sampling_rate, double noise_multiplier, int64_t steps, double delta);

 private:
  void load(const std::string& run_id);
  void add_round(double sampling_rate, double noise_multiplier, int64_t steps);
  void save() const;

  std::filesystem::path file_;
  std::string run_id_;
  bool loaded_ = false;
  nlohmann::json rounds_ = nlohmann::json::array();
  RdpAccountant accountant_;
};

}  // namespace fe::fed
