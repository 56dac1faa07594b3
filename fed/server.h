// fed/server.h — the federation server: admits participants, runs the rounds, aggregates,
// evaluates, checkpoints.
//
// A round: sample participants (a seeded draw per round, so a resumed run samples as the
// uninterrupted one would), push them the global adapter and the round's settings, collect their
// adapters until all answered, went silent (3 missed heartbeats) or round_timeout passed, and
// aggregate the results (in participant-name order, so the arithmetic does not depend on arrival
// order). A round with fewer than min_results results is repeated. After each round the global
// adapter and the strategy state go to output/checkpoint/ (written aside, then renamed), so
// `--resume` continues from the last completed round with the same result, bit for bit.
//
// Monitoring (fed/monitor.h): every message from a participant updates its live status, which
// the server logs as a table every server.status_every seconds and serves over HTTP when
// server.monitor is set. Evaluation runs beside the message loop, so heartbeats are heard
// throughout.
//
// Bad input never stops the server: a message that does not decode, comes from an unknown
// participant, belongs to another round, repeats a result or carries tensors of the wrong
// shape is refused and logged with the reason.
#pragma once

#include <atomic>
#include <iosfwd>
#include <memory>

#include "engine/evaluate.h"
#include "fed/federation_config.h"

namespace fe::fed {

struct RoundRecord {
  int64_t round = 0;
  std::vector<std::string> contributors;     // participants whose results were aggregated
  std::map<std::string, double> train_loss;  // per participant that answered
  std::map<std::string, double> dp_sgd_epsilon;  // per participant training with DP-SGD: its ε so far
  std::map<std::string, int64_t> examples;   // trained on this round, per participant
  EvalResult eval;                           // of the new global adapter (when data.eval is set)
  double epsilon = 0;                        // spent so far, with differential privacy
  int64_t bytes_sent = 0, bytes_received = 0;  // all attempts at the round together
  int attempts = 1;                            // a round with too few results is repeated
  double seconds = 0;
};

class Server {
 public:
  Server(const FederationConfig& config, bool resume, std::ostream& log);
  ~Server();
  std::string endpoint() const;  // the bound address (with the real port when it was 0)
  // Runs the remaining rounds (or until *stop), tells participants to shut down, saves
  // output/adapter and returns the final global adapter.
  LoraAdapter run(const std::atomic<bool>* stop = nullptr);
  const std::vector<RoundRecord>& history() const;
  // A participant's process (or one of its nodes) ended; `report` says how. Thread-safe: the
  // launcher's watcher calls it. The server logs it, shows the participant as gone and stops
  // waiting for its result.
  void participant_exited(const std::string& name, const std::string& report);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fe::fed
