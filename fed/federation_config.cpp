#include "fed/federation_config.h"

#include <unistd.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <regex>
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

UpdateNormOptions read_max_update_norm(const ConfigNode& node) {
  UpdateNormOptions o;
  o.action = parse_norm_bound_action(node.get_choice("action", {"off", "clip", "refuse"}, "clip"));
  o.median_multiple = node.get<double>("median_multiple", o.median_multiple, Bounds::at_least(1));
  o.absolute = node.get<double>("absolute", o.absolute, Bounds::greater_than(0));
  if (node.has("absolute") && node.has("median_multiple"))
    node.fail("absolute",
              "set either absolute (a fixed bound) or median_multiple (a bound that follows the round's "
              "median update norm), not both");
  return o;
}

// Each rule's own keys only with that rule: a trim_fraction next to rule: krum is a mistake.
RobustOptions read_aggregation(const ConfigNode& node) {
  RobustOptions o;
  o.rule = parse_robust_rule(node.get_choice("rule", {"mean", "median", "trimmed_mean", "krum"}, "mean"));
  o.trim_fraction =
      node.get<double>("trim_fraction", o.trim_fraction, Bounds{.min = 0, .max = 0.5, .max_exclusive = true});
  o.byzantine = node.get<int64_t>("byzantine", o.byzantine, Bounds::at_least(0));
  o.selected = node.get<int64_t>("selected", o.selected, Bounds::at_least(1));
  const std::vector<std::pair<const char*, RobustRule>> owners = {
      {"trim_fraction", RobustRule::trimmed_mean}, {"byzantine", RobustRule::krum}, {"selected", RobustRule::krum}};
  for (const auto& [key, rule] : owners)
    if (node.has(key) && o.rule != rule)
      node.fail(key, std::string("applies to rule: ") + robust_rule_name(rule) + ", and the rule is " +
                         robust_rule_name(o.rule));
  return o;
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
  s.monitor_address = node.get<std::string>("monitor", "");
  if (!s.monitor_address.empty()) {
    static const std::regex host_port("(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):([0-9]{1,5})");
    std::smatch match;
    if (!std::regex_match(s.monitor_address, match, host_port) || std::stoi(match[2]) > 65535)
      node.fail("monitor", "expected host:port (127.0.0.1:9100; port 0 picks a free one), got \"" + s.monitor_address + "\"");
  }
  s.status_every_s = node.get<double>("status_every", s.status_every_s, Bounds::at_least(0));
  // Paths, not yet files: each machine holds only what its role needs (the server its secret key,
  // participants the server's public key), so existence is checked where a file is opened.
  s.server_key = node.get_path("server_key");
  s.server_public_key = node.get_path("server_public_key");
  s.max_update_norm = read_max_update_norm(node.child("max_update_norm"));
  s.aggregation = read_aggregation(node.child("aggregation"));
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

bool is_participant_name(const std::string& name) {
  static const std::regex pattern("[A-Za-z0-9_][A-Za-z0-9._-]*");
  return std::regex_match(name, pattern);
}

// Host names (RFC 1123 labels), IPv4 and IPv6 addresses: nothing a shell or ssh would read as
// anything else.
bool is_host_name(const std::string& host) {
  static const std::regex pattern("[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\\[?[0-9A-Fa-f:.]+\\]?");
  return std::regex_match(host, pattern);
}

// Two multi-rank participants whose rank 0 runs on the same host cannot share a rendezvous port.
void check_rendezvous_ports(const FederationConfig& config, const std::vector<ConfigNode>& entries) {
  std::map<std::pair<std::string, int>, std::string> used;
  for (size_t i = 0; i < config.participants.size(); ++i) {
    const ParticipantConfig& p = config.participants[i];
    if (p.world_size() == 1) continue;
    const std::string host = is_local_host(p.nodes.front().host) ? "localhost" : p.nodes.front().host;
    const auto [it, fresh] = used.emplace(std::pair{host, p.master_port}, p.name);
    if (!fresh)
      entries[i].fail("master_port", std::to_string(p.master_port) + " on " + host + " is already participant " + it->second +
                                         "'s rendezvous port; give each participant its own");
  }
}

std::vector<NodeConfig> read_nodes(const ConfigNode& participant) {
  std::vector<NodeConfig> nodes;
  std::set<std::string> hosts;
  for (const ConfigNode& entry : participant.children_list("nodes")) {
    NodeConfig node;
    node.host = entry.get<std::string>("host", node.host);
    if (!is_host_name(node.host)) entry.fail("host", "expected a host name or an IPv4/IPv6 address, got \"" + node.host + "\"");
    if (!hosts.insert(node.host).second) entry.fail("host", "\"" + node.host + "\" is listed twice; give it all its ranks in one node");
    node.gpus = entry.get<std::vector<int64_t>>("gpus", {});
    for (int64_t gpu : node.gpus)
      if (gpu < 0) entry.fail("gpus", "GPU indices are >= 0");
    const int64_t default_ranks = node.gpus.empty() ? 1 : static_cast<int64_t>(node.gpus.size());
    node.ranks = static_cast<int>(entry.get<int64_t>("ranks", default_ranks, Bounds::between(1, 4096)));
    if (!node.gpus.empty() && node.ranks != default_ranks)
      entry.fail("ranks", "a GPU node runs one rank per listed GPU (" + std::to_string(default_ranks) + ")");
    if (!nodes.empty() && nodes.front().gpus.empty() != node.gpus.empty())
      entry.fail("gpus", "either every node of a participant lists gpus (NCCL ranks) or none does (Gloo CPU ranks)");
    nodes.push_back(std::move(node));
  }
  if (nodes.empty()) nodes.emplace_back();
  const bool spans_hosts = std::any_of(nodes.begin(), nodes.end(), [](const NodeConfig& n) { return !is_local_host(n.host); });
  const std::string& first = nodes.front().host;
  if (spans_hosts && (first == "localhost" || first == "::1" || first.starts_with("127.")))
    participant.fail("nodes", "the first node hosts rank 0's rendezvous: with nodes on other machines, name it by an address "
                              "they can reach, not \"" + first + "\"");
  return nodes;
}

NetworkConfig read_network(const ConfigNode& node) {
  NetworkConfig n;
  if (node.has("infiniband")) n.infiniband = node.get<bool>("infiniband", false) ? 1 : 0;
  n.socket_ifname = node.get<std::string>("socket_ifname", "");
  n.ib_hca = node.get<std::string>("ib_hca", "");
  n.extra_env = node.get<std::vector<std::string>>("env", {});
  for (const std::string& assignment : n.extra_env) {
    const size_t equals = assignment.find('=');
    if (equals == 0 || equals == std::string::npos ||
        assignment.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") < equals)
      node.fail("env", "expected NAME=value entries, got \"" + assignment + "\"");
  }
  return n;
}

LaunchConfig read_launch(const ConfigNode& root) {
  LaunchConfig l;
  l.mode = root.get_choice("launch", {"manual", "ssh"}, "manual") == "ssh" ? LaunchMode::ssh : LaunchMode::manual;
  const ConfigNode ssh = root.child("ssh");
  l.ssh_command = ssh.get<std::string>("command", l.ssh_command);
  l.remote_fedengine = ssh.get<std::string>("fedengine", l.remote_fedengine);
  if (l.ssh_command.empty()) ssh.fail("command", "must not be empty");
  if (l.remote_fedengine.empty()) ssh.fail("fedengine", "must not be empty");
  return l;
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

// A robust rule replaces the mean that DP's noise is calibrated to; Krum cannot average more
// results than there are participants.
void check_aggregation(const FederationConfig& config, const ConfigNode& aggregation) {
  const RobustOptions& o = config.server.aggregation;
  if (o.rule != RobustRule::mean && config.server.privacy.mode != DpMode::off)
    aggregation.fail("rule", std::string("privacy.mode ") + dp_mode_name(config.server.privacy.mode) +
                                 " calibrates its noise to the mean of the clipped updates, which rule " +
                                 robust_rule_name(o.rule) + " replaces; use one of the two");
  const auto participants = static_cast<int64_t>(config.participants.size());
  if (o.rule == RobustRule::krum && o.selected > participants)
    aggregation.fail("selected", "exceeds the " + std::to_string(participants) + " participants listed");
}

}  // namespace

std::vector<std::pair<std::string, std::string>> NetworkConfig::environment() const {
  std::vector<std::pair<std::string, std::string>> env;
  if (infiniband >= 0) env.emplace_back("NCCL_IB_DISABLE", infiniband ? "0" : "1");
  if (!socket_ifname.empty()) {
    env.emplace_back("NCCL_SOCKET_IFNAME", socket_ifname);
    env.emplace_back("GLOO_SOCKET_IFNAME", socket_ifname);
  }
  if (!ib_hca.empty()) env.emplace_back("NCCL_IB_HCA", ib_hca);
  for (const std::string& assignment : extra_env) {
    const size_t equals = assignment.find('=');
    env.emplace_back(assignment.substr(0, equals), assignment.substr(equals + 1));
  }
  return env;
}

int ParticipantConfig::world_size() const {
  return std::accumulate(nodes.begin(), nodes.end(), 0, [](int sum, const NodeConfig& n) { return sum + n.ranks; });
}

int ParticipantConfig::first_rank(size_t node) const {
  int rank = 0;
  for (size_t i = 0; i < node; ++i) rank += nodes.at(i).ranks;
  return rank;
}

std::vector<std::pair<std::string, std::string>> node_environment(const ParticipantConfig& p, size_t node) {
  const NodeConfig& n = p.nodes.at(node);
  const bool all_local = std::all_of(p.nodes.begin(), p.nodes.end(), [](const NodeConfig& x) { return is_local_host(x.host); });
  std::vector<std::pair<std::string, std::string>> env = {
      {"WORLD_SIZE", std::to_string(p.world_size())},
      {"LOCAL_WORLD_SIZE", std::to_string(n.ranks)},
      {"MASTER_ADDR", all_local ? "127.0.0.1" : p.nodes.front().host},
      {"MASTER_PORT", std::to_string(p.master_port)}};
  if (!n.gpus.empty()) {
    std::string devices;
    for (int64_t gpu : n.gpus) devices += (devices.empty() ? "" : ",") + std::to_string(gpu);
    env.emplace_back("CUDA_VISIBLE_DEVICES", devices);
  }
  for (auto& variable : p.network.environment()) env.push_back(std::move(variable));
  return env;
}

bool is_local_host(const std::string& host) {
  if (host == "localhost" || host == "::1" || host.starts_with("127.")) return true;
  char name[256] = {};
  return gethostname(name, sizeof name - 1) == 0 && host == name;
}

std::vector<std::string> FederationConfig::participant_names() const {
  std::vector<std::string> names;
  for (const ParticipantConfig& p : participants) names.push_back(p.name);
  return names;
}

const ParticipantConfig& FederationConfig::participant(const std::string& name) const {
  std::string names;
  for (const ParticipantConfig& p : participants) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  throw Error(path + ": no participant named \"" + name + "\" (participants: " + names + ")");
}

namespace {

void read_settings(const ConfigNode& root, FederationConfig& config) {
  config.server = read_server(root.child("server"));
  std::set<std::string> names;
  const std::vector<ConfigNode> entries = root.children_list("participants");
  if (entries.empty()) root.fail("participants", "list at least one participant");
  for (const ConfigNode& entry : entries) {
    ParticipantConfig p;
    p.name = entry.require<std::string>("name");
    if (!is_participant_name(p.name))
      entry.fail("name", "use letters, digits, '.', '_' and '-', not starting with '-' or '.' (it names a directory and "
                         "appears in shell scripts), got \"" + p.name + "\"");
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
    p.nodes = read_nodes(entry);
    if (p.uses_gpus()) {  // its ranks train on the GPUs they list
      if (p.train.full_parameter) entry.fail("nodes", "GPU ranks train LoRA adapters only (adapter.method: full runs on the CPU)");
      p.train.device = Device::cuda;
    }
    if (p.train.device == Device::cuda && !p.uses_gpus() && p.world_size() > 1)
      entry.fail("nodes", "several GPU ranks need their GPUs listed: {host: h, gpus: [0, 1, ...]} instead of ranks");
    // Participants on one host need rendezvous ports of their own.
    p.master_port = static_cast<int>(entry.get<int64_t>("master_port", p.master_port + static_cast<int64_t>(config.participants.size()),
                                                        Bounds::between(1, 65535)));
    p.network = read_network(merged.child("network"));
    p.launch = read_launch(merged);
    config.participants.push_back(std::move(p));
  }
  check_rendezvous_ports(config, entries);
  config.shared = read_train_config(root, false);
  if (config.shared.output_dir.empty()) root.child("output").fail("dir", "the federation needs output.dir (the server's run directory)");
  config.server.privacy = read_privacy(root.child("privacy"), config.shared.seed);
  check_count_noise(config, root.child("privacy"));
  check_aggregation(config, root.child("server").child("aggregation"));
  if (config.server.min_clients > static_cast<int64_t>(config.participants.size()))
    root.child("server").fail("min_clients", "exceeds the " + std::to_string(config.participants.size()) + " participants listed");
}

}  // namespace

FederationConfig read_federation_config(const std::string& path) {
  const ConfigNode root = ConfigNode::load_file(path);
  FederationConfig config;
  config.path = path;
  root.read_checked([&] { read_settings(root, config); });
  return config;
}

std::filesystem::path participant_dir(const FederationConfig& config, const ParticipantConfig& participant) {
  return std::filesystem::path(config.shared.output_dir) / "participants" / participant.name;
}

}  // namespace fe::fed
