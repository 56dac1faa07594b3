#include "fed/federation_config.h"

#include <set>

namespace fe::fed {
namespace {

StrategyOptions read_strategy(const ConfigNode& node) {
  StrategyOptions s;
  s.name = node.get_choice("name", {"fedavg", "fedprox", "fedadagrad", "fedadam", "fedyogi"}, s.name);
  s.proximal_mu = node.get<double>("proximal_mu", s.proximal_mu, Bounds::at_least(0));
  s.eta = node.get<double>("eta", s.eta, Bounds::greater_than(0));
  s.beta1 = node.get<double>("beta1", s.beta1, Bounds{.min = 0, .max = 1, .max_exclusive = true});
  s.beta2 = node.get<double>("beta2", s.beta2, Bounds{.min = 0, .max = 1, .max_exclusive = true});
  s.tau = node.get<double>("tau", s.tau, Bounds::greater_than(0));
  s.initial_accumulator = node.get<double>("initial_accumulator", s.initial_accumulator);
  s.bias_correction = node.get<bool>("bias_correction", s.bias_correction);
  return s;
}

ServerConfig read_server(const ConfigNode& node) {
  ServerConfig s;
  s.address = node.get<std::string>("address", s.address);
  s.rounds = node.get<int64_t>("rounds", s.rounds, Bounds::at_least(1));
  s.strategy = read_strategy(node.child("strategy"));
  s.fraction = node.get<double>("fraction", s.fraction, Bounds{.min = 0, .max = 1, .min_exclusive = true});
  s.min_clients = node.get<int64_t>("min_clients", s.min_clients, Bounds::at_least(1));
  s.min_results = node.get<int64_t>("min_results", s.min_results, Bounds::at_least(1));
  s.round_timeout_s = node.get<double>("round_timeout", s.round_timeout_s, Bounds::greater_than(0));
  s.join_timeout_s = node.get<double>("join_timeout", s.join_timeout_s, Bounds::greater_than(0));
  s.heartbeat_s = node.get<double>("heartbeat", s.heartbeat_s, Bounds::greater_than(0));
  // Paths, not yet files: each machine holds only what its role needs (the server its secret key,
  // participants the server's public key), so existence is checked where a file is opened.
  s.server_key = node.get_path("server_key");
  s.server_public_key = node.get_path("server_public_key");
  if (s.server_key.empty() != s.server_public_key.empty())
    node.fail(s.server_key.empty() ? "server_public_key" : "server_key",
              "set both server_key and server_public_key (CurveZMQ) or neither (plain loopback TCP)");
  if (s.min_results > s.min_clients)
    node.fail("min_results", "cannot exceed min_clients (" + std::to_string(s.min_clients) + ")");
  return s;
}

DpOptions read_privacy(const ConfigNode& node, uint64_t seed) {
  DpOptions o;
  o.mode = parse_dp_mode(node.get_choice("mode", {"off", "server_fixed", "server_adaptive", "client_fixed", "client_adaptive"}, "off"));
  o.noise_multiplier = node.get<double>("noise_multiplier", o.noise_multiplier, Bounds::at_least(0));
  o.clip_norm = node.get<double>("clip_norm", o.clip_norm, Bounds::greater_than(0));
  o.target_quantile = node.get<double>("target_quantile", o.target_quantile, Bounds{.min = 0, .max = 1, .min_exclusive = true, .max_exclusive = true});
  o.clip_learning_rate = node.get<double>("clip_learning_rate", o.clip_learning_rate, Bounds::at_least(0));
  o.clipped_count_stddev = node.get<double>("clipped_count_stddev", o.clipped_count_stddev);
  o.delta = node.get<double>("delta", o.delta, Bounds{.min = 0, .max = 1, .min_exclusive = true, .max_exclusive = true});
  o.target_epsilon = node.get<double>("target_epsilon", o.target_epsilon, Bounds::at_least(0));
  o.seed = seed;
  return o;
}

PartitionOptions read_partition(const ConfigNode& node) {
  PartitionOptions o;
  o.strategy = parse_partition_strategy(node.get_choice(
      "strategy", {"all", "fixed_size", "percentage", "max_data_volume", "volume_and_memory"}, "all"));
  o.size = node.get<int64_t>("size", o.size, Bounds::at_least(1));
  o.percent = node.get<double>("percent", o.percent, Bounds{.min = 0, .max = 100, .min_exclusive = true});
  o.bytes_per_example = node.get<double>("bytes_per_example", o.bytes_per_example, Bounds::greater_than(0));
  o.memory_fraction = node.get<double>("memory_fraction", o.memory_fraction, Bounds{.min = 0, .max = 1, .min_exclusive = true});
  if (o.strategy == PartitionStrategy::fixed_size && !node.has("size")) node.fail("size", "fixed_size needs a size");
  return o;
}

// Adaptive clipping spends part of the budget on the clipped count; with σ_b ≤ z/2 nothing would be
// left for the update (fed/privacy.h). Checked here, before any process starts, with the smallest
// number of participants a round can have.
void check_count_noise(const FederationConfig& config, const ConfigNode& privacy) {
  const DpOptions& o = config.server.privacy;
  const bool adaptive = o.mode == DpMode::server_adaptive || o.mode == DpMode::client_adaptive;
  if (!adaptive || o.noise_multiplier == 0) return;
  const double smallest_round = static_cast<double>(config.server.min_results);
  const double sigma_b = o.clipped_count_stddev >= 0 ? o.clipped_count_stddev : smallest_round / 20;
  if (sigma_b <= o.noise_multiplier / 2)
    privacy.fail("clipped_count_stddev",
                 "adaptive clipping needs clipped_count_stddev > noise_multiplier / 2 = " +
                     std::to_string(o.noise_multiplier / 2) + "; it is " + std::to_string(sigma_b) +
                     (o.clipped_count_stddev >= 0 ? "" : " (the default: participants per round / 20)"));
}

}  // namespace

const ParticipantConfig& FederationConfig::participant(const std::string& name) const {
  std::string names;
  for (const ParticipantConfig& p : participants) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  throw Error(path + ": no participant named \"" + name + "\" (participants: " + names + ")");
}

FederationConfig read_federation_config(const std::string& path) {
  const ConfigNode root = ConfigNode::load_file(path);
  FederationConfig config;
  config.path = path;
  config.server = read_server(root.child("server"));
  std::set<std::string> names;
  const std::vector<ConfigNode> entries = root.children_list("participants");
  if (entries.empty()) root.fail("participants", "list at least one participant");
  for (const ConfigNode& entry : entries) {
    ParticipantConfig p;
    p.name = entry.require<std::string>("name");
    if (p.name.empty() || p.name.find_first_of("/ \t") != std::string::npos)
      entry.fail("name", "must be non-empty, without spaces or slashes (it names a directory)");
    if (!names.insert(p.name).second) entry.fail("name", "\"" + p.name + "\" is used twice");
    p.key = entry.get_path("key");
    p.public_key = entry.get_path("public_key", p.key);
    if (config.server.server_key.empty() != p.key.empty())
      entry.fail("key", "with CurveZMQ (server.server_key) every participant needs a key, and without it none");
    const ConfigNode merged = root.with_overrides(entry);
    // Not checked for existence here: a participant's data lives on its own machine only.
    p.train = read_train_config(merged, false);
    if (p.train.train_file.empty()) entry.fail("data", "participant " + p.name + " needs data.train");
    p.partition = read_partition(merged.child("partition"));
    config.participants.push_back(std::move(p));
  }
  config.shared = read_train_config(root, false);
  if (config.shared.output_dir.empty()) root.child("output").fail("dir", "the federation needs output.dir (the server's run directory)");
  config.server.privacy = read_privacy(root.child("privacy"), config.shared.seed);
  check_count_noise(config, root.child("privacy"));
  if (config.server.min_clients > static_cast<int64_t>(config.participants.size()))
    root.child("server").fail("min_clients", "exceeds the " + std::to_string(config.participants.size()) + " participants listed");
  root.check_all_keys_used();
  return config;
}

}  // namespace fe::fed
