// fed/federation_config.h — one YAML file describes a whole federation (`fedengine run cfg.yaml`).
//
// The top level holds the training settings shared by everyone, in the sections of
// `fedengine train` (model, tokenizer, data, adapter, train, eval, output; see
// engine/train_config.h), plus:
//   server:
//     address: tcp://127.0.0.1:5555   # where the server listens and participants connect
//     rounds: 5
//     strategy: {name: fedavg|fedprox|fedadagrad|fedadam|fedyogi, proximal_mu, eta, beta1,
//                beta2, tau, initial_accumulator, bias_correction}
//     fraction: 1.0        # participants sampled per round (at least min_clients of them)
//     min_clients: 2       # participants that must have joined before round 1 starts
//     min_results: 2       # results a round needs to count (fewer: the round is repeated)
//     round_timeout: 600   # seconds a round waits for its results
//     join_timeout: 120    # seconds to wait for min_clients
//     heartbeat: 2         # seconds between participant heartbeats; 3 missed = gone
//     server_key: keys/server.key      # CurveZMQ keypair (omit both for plain loopback TCP)
//     server_public_key: keys/server.pub
//   participants:
//     - name: alice
//       key: keys/alice.key            # its CurveZMQ keypair (used where alice runs)
//       public_key: keys/alice.pub     # what the server trusts (default: the public half of key)
//       data: {train: alice.jsonl}     # any training setting may be overridden per participant
//       train: {lr: 1.0e-3}
//   privacy:               # user-level DP on the updates (fed/privacy.h); default mode: off
//     mode: server_fixed    # server_fixed | server_adaptive | client_fixed | client_adaptive
//     noise_multiplier: 1.0, clip_norm: 0.1, target_quantile: 0.5, clip_learning_rate: 0.2,
//     clipped_count_stddev: -1, delta: 1.0e-5, target_epsilon: 0
//   partition:             # top level or per participant (fed/partition.h); default: all
//     strategy: fixed_size  # all | fixed_size | percentage | max_data_volume | volume_and_memory
//     size: 200, percent: 10, bytes_per_example: 1048576, memory_fraction: 0.8
// Per round, a participant trains train.steps steps from the global adapter and returns it; with
// a partition strategy other than `all` it instead makes one pass over its round's slice. The
// server evaluates the global adapter on data.eval (when set) after every round. Everything a run
// writes goes under output.dir: the global adapter (adapter/), the resume checkpoint
// (checkpoint/), metrics.jsonl (one line per round) and participants/<name>/ (their logs).
#pragma once

#include <string>
#include <vector>

#include "engine/train_config.h"
#include "fed/partition.h"
#include "fed/privacy.h"
#include "fed/strategy.h"

namespace fe::fed {

struct ServerConfig {
  std::string address = "tcp://127.0.0.1:5555";
  int64_t rounds = 3;
  StrategyOptions strategy;
  double fraction = 1.0;
  int64_t min_clients = 1;
  int64_t min_results = 1;
  double round_timeout_s = 600;
  double join_timeout_s = 120;
  double heartbeat_s = 2;
  std::string server_key;         // path to the server's .key; empty: plain TCP
  std::string server_public_key;  // path to the server's .pub (what participants trust)
  DpOptions privacy;
};

struct ParticipantConfig {
  std::string name;
  std::string key;                // path to its .key (what it runs with)
  std::string public_key;         // path to its .pub, for the server's allow-list (default: key)
  TrainConfig train;              // the shared settings with this participant's overrides
  PartitionOptions partition;     // likewise
};

struct FederationConfig {
  std::string path;               // the YAML file
  ServerConfig server;
  TrainConfig shared;             // the top-level settings: model, adapter, server-side eval
  std::vector<ParticipantConfig> participants;

  const ParticipantConfig& participant(const std::string& name) const;  // Error naming the choices
};

// Reads and validates the whole file (unknown keys included); errors name file:line and key.
// Data and key files are not required to exist here: each machine of a multi-machine run holds
// only its own, and the role that opens a file reports it missing.
FederationConfig read_federation_config(const std::string& path);

}  // namespace fe::fed
