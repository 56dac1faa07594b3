#include "fed/dp_sgd_ledger.h"

#include <fstream>

#include "engine/durable_file.h"

namespace fe::fed {

double DpSgdLedger::add(const std::string& run_id, double sampling_rate, double noise_multiplier, int64_t steps,
                        double delta) {
  if (!loaded_ || run_id != run_id_) load(run_id);
  add_round(sampling_rate, noise_multiplier, steps);
  save();
  return accountant_.epsilon(delta);
}

void DpSgdLedger::load(const std::string& run_id) {
  run_id_ = run_id;
  accountant_ = RdpAccountant();
  rounds_ = nlohmann::json::array();
  loaded_ = true;
  std::ifstream in(file_);
  const nlohmann::json saved = nlohmann::json::parse(in, nullptr, false);
  if (!in.is_open() || !saved.is_object() || saved.value("run_id", "") != run_id) return;
  const nlohmann::json rounds = saved.value("rounds", nlohmann::json::array());
  for (const nlohmann::json& round : rounds)
    add_round(round.value("sampling_rate", 1.0), round.value("noise_multiplier", 0.0),
              round.value("steps", int64_t{0}));
}

void DpSgdLedger::add_round(double sampling_rate, double noise_multiplier, int64_t steps) {
  if (noise_multiplier <= 0 || steps <= 0) return;
  accountant_.add_steps(sampling_rate, noise_multiplier, steps);
  rounds_.push_back({{"sampling_rate", sampling_rate}, {"noise_multiplier", noise_multiplier}, {"steps", steps}});
}

void DpSgdLedger::save() const {
  std::filesystem::create_directories(file_.parent_path());
  write_file_whole(file_.string(), nlohmann::json{{"run_id", run_id_}, {"rounds", rounds_}}.dump(1) + "\n");
}

}  // namespace fe::fed
