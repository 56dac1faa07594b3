// fed/server.h — the federation server: admits participants, runs the rounds, aggregates,
// evaluates, checkpoints.
//
// A round, step by step: sample (the strategy draws from the alive participants, a seeded draw
// per round, so a resumed run samples as the uninterrupted one would) → send (the global adapter
// and the round's settings) → collect (adapters until all answered, went silent — the roster's
// gone rule, fed/roster.h — or round_timeout passed) → privacy and aggregate (the strategy, with
// DP wrapped around it when server.privacy is on; results in participant-name order, so the
// arithmetic does not depend on arrival order) → evaluate → checkpoint (fed/server_checkpoint.h:
// `--resume` continues from the last completed round with the same result, bit for bit) → report
// (fed/round_report.h). A round with fewer than min_results results is repeated.
//
// Monitoring (fed/monitor.h): every message from a participant updates its roster record, which
// the server logs as a table every server.status_every seconds and serves over HTTP when
// server.monitor is set. Evaluation runs beside the message loop, so heartbeats are heard
// throughout.
//
// Bad input never stops the server: a message that does not decode, comes from an unknown
// participant, belongs to another round, repeats a result or carries tensors of the wrong
// shape is refused and logged with the reason. A participant's result is held to the bounds of
// fed/update_bounds.h (its examples, its update's norm), and a round whose aggregate holds a NaN
// or Inf is logged and skipped: the global adapter, the strategy's state and the checkpoint stay
// those of the round before.
#pragma once

#include <atomic>
#include <iosfwd>
#include <memory>

#include "engine/lora.h"
#include "fed/federation_config.h"
#include "fed/round_report.h"

namespace fe::fed {

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
