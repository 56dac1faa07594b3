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
  s.server_key = node.has("server_key") ? node.existing_file("server_key") : "";
  s.server_public_key = node.has("server_public_key") ? node.existing_file("server_public_key") : "";
  if (s.server_key.empty() != s.server_public_key.empty())
    node.fail(s.server_key.empty() ? "server_public_key" : "server_key",
              "set both server_key and server_public_key (CurveZMQ) or neither (plain loopback TCP)");
  if (s.min_results > s.min_clients)
    node.fail("min_results", "cannot exceed min_clients (" + std::to_string(s.min_clients) + ")");
  return s;
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
    p.key = entry.has("key") ? entry.existing_file("key") : "";
    if (config.server.server_key.empty() != p.key.empty())
      entry.fail("key", "with CurveZMQ (server.server_key) every participant needs a key, and without it none");
    p.train = read_train_config(root.with_overrides(entry), true);
    config.participants.push_back(std::move(p));
  }
  config.shared = read_train_config(root, false);
  if (config.server.min_clients > static_cast<int64_t>(config.participants.size()))
    root.child("server").fail("min_clients", "exceeds the " + std::to_string(config.participants.size()) + " participants listed");
  root.check_all_keys_used();
  return config;
}

}  // namespace fe::fed
