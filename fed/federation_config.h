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
//     monitor: 127.0.0.1:9100  # HTTP: /metrics (Prometheus), /status (JSON); default off
//     status_every: 30     # seconds between status tables in the log; 0: none
//     server_key: keys/server.key      # CurveZMQ keypair (omit both for plain loopback TCP)
//     server_public_key: keys/server.pub
//     max_update_norm:     # each round's bound on ‖result − global adapter‖ (fed/update_bounds.h)
//       action: clip        # clip (default) | refuse | off
//       median_multiple: 10 # the bound in lower medians of the round's update norms
//       absolute: 0.5       # or a fixed bound (not both)
//     aggregation:         # what replaces the strategy's weighted mean (fed/robust_aggregation.h)
//       rule: median        # mean (default) | median | trimmed_mean | krum; not with privacy
//       trim_fraction: 0.2  # trimmed_mean: share dropped at each end, in [0, 0.5)
//       byzantine: 1        # krum: hostile participants assumed (f)
//       selected: 1         # krum: results averaged (m; > 1 is multi-Krum)
//   participants:
//     - name: alice
//       key: keys/alice.key            # its CurveZMQ keypair (used where alice runs)
//       public_key: keys/alice.pub     # what the server trusts (default: the public half of key)
//       data: {train: alice.jsonl}     # any training setting may be overridden per participant
//       train: {lr: 1.0e-3}
//       nodes:                         # its machines and ranks (default: one rank on localhost)
//         - {host: localhost, ranks: 2}          # CPU ranks (Gloo)
//         - {host: gpu-b.example, gpus: [0, 1]}  # one rank per listed GPU (NCCL)
//       master_port: 29500             # rank 0's rendezvous port on nodes[0].host (default 29500 + index)
//   network:               # top level or per participant: every rank's NCCL/Gloo environment
//     infiniband: false     # NCCL_IB_DISABLE=1 (true: 0; absent: NCCL decides)
//     socket_ifname: eth0   # NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME
//     ib_hca: mlx5_0        # NCCL_IB_HCA
//     env: [NCCL_DEBUG=INFO]  # anything else, verbatim
//   launch: manual          # top level or per participant, for nodes on other hosts:
//                           # manual (run prints the script to start there) | ssh
//   ssh: {command: ssh -o BatchMode=yes, fedengine: fedengine}  # with launch: ssh
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

#include <filesystem>
#include <string>
#include <vector>

#include "engine/train_config.h"
#include "fed/partition.h"
#include "fed/privacy.h"
#include "fed/robust_aggregation.h"
#include "fed/strategy.h"
#include "fed/update_bounds.h"

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
  std::string monitor_address;    // host:port of the monitoring endpoint; empty: off
  double status_every_s = 30;
  std::string server_key;         // path to the server's .key; empty: plain TCP
  std::string server_public_key;  // path to the server's .pub (what participants trust)
  UpdateNormOptions max_update_norm;
  RobustOptions aggregation;
  DpOptions privacy;
};

// One machine of a participant and the ranks it runs.
struct NodeConfig {
  std::string host = "localhost";
  int ranks = 1;               // CPU ranks; with gpus, one per GPU
  std::vector<int64_t> gpus;   // CUDA device indices on that host; empty: CPU ranks
};

struct NetworkConfig {
  int infiniband = -1;         // -1: NCCL's choice, 0: off, 1: on
  std::string socket_ifname;
  std::string ib_hca;
  std::vector<std::string> extra_env;  // "NAME=value"
  // The environment variables these settings become, in a fixed order.
  std::vector<std::pair<std::string, std::string>> environment() const;
};

enum class LaunchMode { manual, ssh };

struct LaunchConfig {
  LaunchMode mode = LaunchMode::manual;
  std::string ssh_command = "ssh -o BatchMode=yes";
  std::string remote_fedengine = "fedengine";  // the command that runs fedengine on other hosts
};

struct ParticipantConfig {
  std::string name;
  std::string key;                // path to its .key (what it runs with)
  std::string public_key;         // path to its .pub, for the server's allow-list (default: key)
  TrainConfig train;              // the shared settings with this participant's overrides
  PartitionOptions partition;     // likewise
  std::vector<NodeConfig> nodes;  // at least one; nodes[0] hosts rank 0
  int master_port = 29500;
  NetworkConfig network;
  LaunchConfig launch;

  int world_size() const;                 // ranks over all nodes
  int first_rank(size_t node) const;      // global rank of the node's local rank 0
  bool uses_gpus() const { return !nodes.front().gpus.empty(); }
};

// The environment every rank of node `node` runs with: WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR
// (nodes[0].host; 127.0.0.1 when every node is local), MASTER_PORT, CUDA_VISIBLE_DEVICES for GPU
// nodes, and the network settings. RANK and LOCAL_RANK are added per process.
std::vector<std::pair<std::string, std::string>> node_environment(const ParticipantConfig& participant, size_t node);

// Whether `host` names this machine (localhost, a loopback address or this machine's hostname):
// `fedengine run` starts such nodes itself.
bool is_local_host(const std::string& host);

struct FederationConfig;
// OUTPUT/participants/NAME: a participant's logs and the state it keeps across restarts, on each
// machine it runs on.
std::filesystem::path participant_dir(const FederationConfig& config, const ParticipantConfig& participant);

struct FederationConfig {
  std::string path;               // the YAML file
  ServerConfig server;
  TrainConfig shared;             // the top-level settings: model, adapter, server-side eval
  std::vector<ParticipantConfig> participants;

  const ParticipantConfig& participant(const std::string& name) const;  // Error naming the choices
  std::vector<std::string> participant_names() const;                   // in the file's order
};

// Reads and validates the whole file (unknown keys included); errors name file:line and key.
// Data and key files are not required to exist here: each machine of a multi-machine run holds
// only its own, and the role that opens a file reports it missing.
FederationConfig read_federation_config(const std::string& path);

}  // namespace fe::fed
