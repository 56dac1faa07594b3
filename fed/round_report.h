// fed/round_report.h — a federated round as the server records it, logs it (one line) and writes
// it to metrics.jsonl.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/evaluate.h"
#include "fed/privacy.h"

namespace fe::fed {

struct RoundRecord {
  int64_t round = 0;
  std::vector<std::string> sampled;              // asked to train in the attempt that completed
  std::vector<std::string> contributors;         // participants whose results were aggregated
  std::map<std::string, double> train_loss;      // per participant that answered
  std::map<std::string, double> dp_sgd_epsilon;  // per participant training with DP-SGD: its ε so far
  std::map<std::string, int64_t> examples;       // trained on this round, per participant
  EvalResult eval;                               // of the new global adapter (when data.eval is set)
  double epsilon = 0;                            // spent so far, with differential privacy
  int64_t bytes_sent = 0, bytes_received = 0;    // all attempts at the round together
  int attempts = 1;                              // a round with too few results is repeated
  double seconds = 0;

  // The results aggregated (of this attempt and kept from earlier ones): their senders become the
  // contributors, and the per-participant figures keep only theirs.
  void set_contributors(const std::vector<ClientResult>& results);
};

// Round 0 is the starting adapter's evaluation. `dp` is the DP wrapper when there is one (its δ and
// the clip norm after the round); `evaluated` says whether record.eval holds an evaluation.
std::string round_line(const RoundRecord& record, int64_t rounds, bool evaluated, const DpStrategy* dp);
nlohmann::json round_metrics(const RoundRecord& record, bool evaluated, const DpStrategy* dp);

// Before a resumed run appends to metrics.jsonl: the file must end with the line of the round its
// checkpoint holds. The checkpoint is written before that line, so a server killed in between
// left the line out: it is appended from `checkpointed_line` (the copy the checkpoint keeps; null
// for a checkpoint without one). A line cut off by a kill while it was written is removed first.
void restore_metrics_file(const std::string& file, const nlohmann::json& checkpointed_line);

}  // namespace fe::fed
