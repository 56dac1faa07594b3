#include "fed/server.h"


#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <future>
#include <mutex>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>

#include "engine/durable_file.h"
#include "engine/rng.h"
#include "engine/metrics_log.h"
#include "engine/train_run.h"
#include "engine/accountant.h"
#include "fed/adapter_wire.h"
#include "fed/monitor.h"
#include "fed/transport.h"

namespace fe::fed {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Participant {
  std::string peer;              // ZeroMQ routing id
  Clock::time_point last_seen;
  ParticipantVolume volume;      // dataset size and free memory, from its join
  bool left = false;             // said goodbye
};

std::string format_megabytes(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MB", bytes / 1e6);
  return text;
}

}  // namespace

struct Server::Impl {
  const FederationConfig& config;
  std::ostream& log;
  std::unique_ptr<ServerSocket> socket;
  std::unique_ptr<Strategy> strategy;
  LoraAdapter global;
  std::vector<TensorSpec> specs;
  std::optional<LlamaModel> eval_model;
  LoadedRun eval_run;
  std::map<std::string, Participant> participants;
  std::map<std::string, std::string> public_keys;  // with CurveZMQ: each participant's own key
  int64_t first_round = 1;
  std::string run_id = new_run_id();  // tells participants' state of this run from an earlier one's
  // Volumes from the checkpoint a resumed run started from: a participant's share of data does
  // not shrink while the largest participant has yet to rejoin.
  std::map<std::string, ParticipantVolume> checkpointed_volumes;
  std::vector<RoundRecord> history;
  std::optional<MetricsLog> metrics;
  Monitor monitor;
  std::optional<MonitorEndpoint> monitor_endpoint;
  Clock::time_point last_table = Clock::now();
  std::mutex exits_mutex;
  std::vector<std::pair<std::string, std::string>> exits;  // (participant, report) from participant_exited

  // Differential privacy: the mechanism, its accountant, and each completed round's sampling rate
  // (the accountant is rebuilt from them on resume).
  std::optional<DpAggregator> dp;
  RdpAccountant accountant;
  std::vector<double> sampling_rates;

  // The round being collected, and what it has received.
  int64_t current_round = 0;
  bool round_open = false;
  std::vector<std::string> sampled;
  std::map<std::string, ClientResult> results;
  std::map<std::string, double> clipped_bits;  // client-side adaptive DP
  RoundRecord record;
  Clock::time_point round_started;  // of the round's first attempt

  static std::string new_run_id() {
    std::random_device entropy;
    char text[17];
    std::snprintf(text, sizeof text, "%08x%08x", entropy(), entropy());
    return text;
  }

  static std::vector<std::string> names(const FederationConfig& c) {
    std::vector<std::string> all;
    for (const ParticipantConfig& p : c.participants) all.push_back(p.name);
    return all;
  }

  Impl(const FederationConfig& c, bool resume, std::ostream& l)
      : config(c), log(l), monitor(names(c), c.server.heartbeat_s, c.server.rounds) {
    const LlamaConfig model = LlamaConfig::load(c.shared.model_dir);
    global = LoraAdapter::init(model, c.shared.lora, c.shared.seed, DType::f32);
    specs = adapter_specs(global);
    strategy = make_strategy(c.server.strategy);
    if (c.server.privacy.mode != DpMode::off) dp.emplace(c.server.privacy);
    if (resume) restore(model);
    if (!c.shared.eval_file.empty()) {
      TrainConfig eval_config = c.shared;
      eval_config.device = Device::cpu;  // where the global adapter lives; the server needs no GPU
      eval_run = load_run(eval_config, false);
      eval_model.emplace(eval_run.weights);
    }
    fs::create_directories(c.shared.output_dir);
    metrics.emplace((fs::path(c.shared.output_dir) / "metrics.jsonl").string(), resume);
    socket = std::make_unique<ServerSocket>(c.server.address, security(), [this](const std::string& m) { say(m); });
    say("listening on " + socket->endpoint() + " (" + (c.server.server_key.empty() ? "plain TCP, loopback" : "CurveZMQ") +
        "), strategy " + strategy->name() + ", " + std::to_string(c.server.rounds) + " rounds");
    if (!c.server.monitor_address.empty()) {
      monitor_endpoint.emplace(monitor, c.server.monitor_address);
      const std::string host = c.server.monitor_address.substr(0, c.server.monitor_address.rfind(':'));
      say("monitoring on http://" + host + ":" + std::to_string(monitor_endpoint->port()) + "/metrics and /status");
    }
  }

  void say(const std::string& line) { log << "[server] " << line << std::endl; }

  ServerSecurity security() {
    ServerSecurity s;
    if (config.server.server_key.empty()) return s;
    s.server_keys = load_keys(config.server.server_key);
    for (const ParticipantConfig& p : config.participants) {
      public_keys[p.name] = load_keys(p.public_key).public_key;
      s.allowed_client_keys.push_back(public_keys[p.name]);
    }
    return s;
  }

  fs::path checkpoint_dir() const { return fs::path(config.shared.output_dir) / "checkpoint"; }

  void restore(const LlamaConfig& model) {
    fs::path dir = checkpoint_dir();
    if (!fs::exists(dir / "state.json") && fs::exists(dir.string() + ".old")) dir = dir.string() + ".old";
    if (!fs::exists(dir / "state.json")) throw Error(dir.string() + ": no checkpoint to resume from");
    const auto state = nlohmann::json::parse(std::ifstream(dir / "state.json"));
    if (state.at("strategy") != strategy->name())
      throw Error(dir.string() + ": the checkpoint was made with strategy " + state.at("strategy").dump() +
                  ", the config asks for " + strategy->name());
    global = LoraAdapter::load_peft((dir / "adapter").string(), model, DType::f32);
    if (fs::exists(dir / "strategy.safetensors")) strategy->load_state(read_named_tensors((dir / "strategy.safetensors").string()));
    if (dp) {
      dp->load_state(read_named_tensors((dir / "privacy.safetensors").string()));
      for (double q : state.at("dp_sampling_rates")) account(q);
    }
    first_round = state.at("round").get<int64_t>() + 1;
    run_id = state.value("run_id", run_id);
    const nlohmann::json volumes = state.value("volumes", nlohmann::json::object());  // outlives the loop
    for (const auto& [name, volume] : volumes.items())
      checkpointed_volumes[name] = {volume.value("examples", int64_t{0}), volume.value("free_memory_bytes", 0.0)};
    say("resuming after round " + std::to_string(first_round - 1) + " from " + dir.string());
  }

  void checkpoint(int64_t round) {
    const fs::path dir = checkpoint_dir(), staging = dir.string() + ".tmp", old = dir.string() + ".old";
    fs::remove_all(staging);
    global.save_peft((staging / "adapter").string(), config.shared.model_dir);
    if (const NamedTensors state = strategy->state(); !state.empty())
      write_named_tensors((staging / "strategy.safetensors").string(), state);
    if (dp) write_named_tensors((staging / "privacy.safetensors").string(), dp->state());
    nlohmann::json volumes = nlohmann::json::object();
    for (const ParticipantConfig& p : config.participants)
      if (const ParticipantVolume volume = volume_of(p.name); volume.examples > 0)
        volumes[p.name] = {{"examples", volume.examples}, {"free_memory_bytes", volume.free_memory_bytes}};
    const nlohmann::json state = {{"round", round}, {"strategy", strategy->name()}, {"dp_sampling_rates", sampling_rates},
                                  {"run_id", run_id}, {"volumes", volumes}};
    std::ofstream state_file(staging / "state.json");
    state_file << state.dump() << "\n";
    if (!state_file.flush()) throw Error((staging / "state.json").string() + ": write failed");
    state_file.close();
    sync_to_disk(staging);
    // At every moment one complete checkpoint exists: dir, or old while dir is being replaced
    // (restore falls back to it). old is only cleared when dir is there to become the new old.
    if (fs::exists(dir)) {
      fs::remove_all(old);
      fs::rename(dir, old);
    }
    fs::rename(staging, dir);
    sync_to_disk(dir.parent_path(), false);  // the renames themselves
    fs::remove_all(old);
  }

  // --- messages -----------------------------------------------------------------------------

  void send(const std::string& peer, const Message& m) {
    const std::string bytes = encode(m);
    record.bytes_sent += static_cast<int64_t>(bytes.size());
    socket->send(peer, bytes);
  }

  void refuse(const std::string& peer, const std::string& who, const std::string& reason) {
    say("refused a message from " + who + ": " + reason);
    Message reject{.type = MessageType::reject, .client_id = who};
    reject.config["reason"] = reason;
    send(peer, reject);
  }

  bool is_participant(const std::string& name) const {
    return std::any_of(config.participants.begin(), config.participants.end(),
                       [&](const ParticipantConfig& p) { return p.name == name; });
  }

  // A participant's reported volume must be usable by the partition rules.
  static std::optional<std::string> bad_volume(const Message& m) {
    const auto size = m.metrics.find("num_examples");
    if (size == m.metrics.end() || !std::isfinite(size->second) || size->second < 1 || size->second > 1e15)
      return "num_examples must be a positive count";
    const auto memory = m.metrics.find("free_memory_bytes");
    if (memory != m.metrics.end() && !(std::isfinite(memory->second) && memory->second >= 0))
      return "free_memory_bytes must be a non-negative number";
    return std::nullopt;
  }

  void admit(const Message& m, const std::string& peer) {
    if (auto reason = bad_volume(m)) return refuse(peer, m.client_id, *reason);
    monitor.heard_from(m.client_id, m.metrics);
    auto [it, is_new] = participants.try_emplace(m.client_id);
    Participant& p = it->second;
    const bool returning = !is_new && (p.left || !alive(p));
    p.peer = peer;
    p.last_seen = Clock::now();
    p.left = false;
    // The volume is taken at join time only, so partition shares do not drift with free memory.
    if (m.type == MessageType::join || is_new) {
      p.volume.examples = static_cast<int64_t>(m.metrics.at("num_examples"));
      if (auto memory = m.metrics.find("free_memory_bytes"); memory != m.metrics.end()) p.volume.free_memory_bytes = memory->second;
    }
    if (is_new || returning) say("participant " + m.client_id + (returning ? " rejoined" : " joined") + " (" +
                                 std::to_string(p.volume.examples) + " examples)");
    if (m.type == MessageType::join) {
      Message welcome{.type = MessageType::welcome, .round = current_round, .client_id = m.client_id};
      welcome.config["heartbeat"] = config.server.heartbeat_s;
      send(peer, welcome);
      // A sampled participant that restarted mid-round lost its fit: send it again.
      if (round_open && is_sampled(m.client_id) && !results.count(m.client_id)) send_fit(m.client_id);
    }
  }

  bool is_sampled(const std::string& name) const { return std::find(sampled.begin(), sampled.end(), name) != sampled.end(); }

  void send_fit(const std::string& name) {
    Message fit{.type = MessageType::fit, .round = current_round, .client_id = name};
    fit.config = round_settings(current_round, config.participant(name));
    fit.tensors = to_wire(global.named_tensors());
    send(participants.at(name).peer, fit);
  }

  void accept_result(Message& m, const std::string& peer) {
    if (!round_open) return refuse(peer, m.client_id, "result for round " + std::to_string(m.round) + " after the round closed");
    if (m.round != current_round)
      return refuse(peer, m.client_id, "result for round " + std::to_string(m.round) + " while round " +
                                           std::to_string(current_round) + " is open");
    if (!is_sampled(m.client_id)) return refuse(peer, m.client_id, "not sampled for round " + std::to_string(current_round));
    if (results.count(m.client_id)) return refuse(peer, m.client_id, "duplicate result for round " + std::to_string(m.round));
    if (m.num_examples <= 0) return refuse(peer, m.client_id, "num_examples must be positive");
    const auto bit = m.metrics.find("clipped_bit");
    if (dp && dp->options().mode == DpMode::client_adaptive &&
        (bit == m.metrics.end() || (bit->second != 0.0 && bit->second != 1.0)))
      return refuse(peer, m.client_id, "client-side adaptive clipping needs a clipped_bit of 0 or 1");
    try {
      check_tensors(m, specs);
    } catch (const ProtocolError& e) {
      return refuse(peer, m.client_id, e.what());
    }
    NamedTensors params;
    for (NamedTensor& t : m.tensors) params.emplace_back(t.name, t.tensor);
    record.examples[m.client_id] = m.num_examples;
    results[m.client_id] = {m.client_id, std::move(params), m.num_examples};
    if (auto loss = m.metrics.find("train_loss"); loss != m.metrics.end()) record.train_loss[m.client_id] = loss->second;
    if (auto epsilon = m.metrics.find("dp_sgd_epsilon"); epsilon != m.metrics.end() && std::isfinite(epsilon->second) &&
                                                         epsilon->second >= 0)
      record.dp_sgd_epsilon[m.client_id] = epsilon->second;
    if (bit != m.metrics.end()) clipped_bits[m.client_id] = bit->second;
  }

  void handle(const Envelope& envelope) {
    record.bytes_received += static_cast<int64_t>(envelope.payload.size());
    Message m;
    try {
      m = decode(envelope.payload);
    } catch (const ProtocolError& e) {
      say("refused an undecodable message (" + std::to_string(envelope.payload.size()) + " bytes): " + e.what());
      return;
    }
    if (!is_participant(m.client_id)) return refuse(envelope.peer, m.client_id, "no participant of this name is configured");
    // With CurveZMQ a participant may only speak for itself: its name must match its key.
    if (!public_keys.empty() && public_keys.at(m.client_id) != envelope.public_key)
      return refuse(envelope.peer, m.client_id, "sent with the key " + envelope.public_key + ", which belongs to another participant");
    switch (m.type) {
      case MessageType::join:
      case MessageType::heartbeat: return admit(m, envelope.peer);
      case MessageType::fit_result:
        if (auto it = participants.find(m.client_id); it != participants.end()) {
          it->second.peer = envelope.peer;
          it->second.last_seen = Clock::now();
          it->second.left = false;
        }
        monitor.heard_from(m.client_id, m.metrics);
        return accept_result(m, envelope.peer);
      case MessageType::shutdown:
        if (auto it = participants.find(m.client_id); it != participants.end()) {
          it->second.left = true;
          say("participant " + m.client_id + " left");
        }
        monitor.mark_left(m.client_id);
        return;
      default: return refuse(envelope.peer, m.client_id, std::string("unexpected message type ") + message_type_name(m.type));
    }
  }

  // Handles messages until done() or the deadline (or a stop request), and keeps the status
  // current: participants whose process ended, the periodic table.
  template <class Done>
  void pump(double timeout_s, Done&& done, const std::atomic<bool>* stop) {
    const auto start = Clock::now();
    while (!done() && seconds_since(start) < timeout_s && !(stop && *stop)) {
      if (auto envelope = socket->receive(std::chrono::milliseconds(100))) handle(*envelope);
      note_exits();
      if (config.server.status_every_s > 0 && seconds_since(last_table) >= config.server.status_every_s) {
        log << render_table(monitor.snapshot()) << std::flush;
        last_table = Clock::now();
      }
    }
  }

  void note_exits() {
    std::vector<std::pair<std::string, std::string>> ended;
    {
      std::lock_guard lock(exits_mutex);
      ended.swap(exits);
    }
    for (const auto& [name, report] : ended) {
      say("participant " + report);
      monitor.mark_gone(name, report.substr(0, report.find(';')));
      if (auto it = participants.find(name); it != participants.end()) it->second.left = true;  // no result will come
    }
  }

  // Runs `work` on another thread while this one keeps handling messages (heartbeats stay heard).
  template <class Work>
  auto beside_messages(Work&& work) {
    auto result = std::async(std::launch::async, std::forward<Work>(work));
    pump(std::numeric_limits<double>::infinity(),
         [&] { return result.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }, nullptr);
    return result.get();
  }

  // --- rounds -------------------------------------------------------------------------------

  bool alive(const Participant& p) const {
    return !p.left && seconds_since(p.last_seen) < 3 * config.server.heartbeat_s;
  }

  std::vector<std::string> alive_names() const {
    std::vector<std::string> names;
    for (const auto& [name, p] : participants)
      if (alive(p)) names.push_back(name);
    return names;  // std::map: sorted
  }

  // A seeded draw per round: the same participants whatever happened before (resume-safe).
  std::vector<std::string> sample(int64_t round) const {
    std::vector<std::string> names = alive_names();
    const auto wanted = static_cast<size_t>(std::max<double>(
        static_cast<double>(config.server.min_clients), std::ceil(config.server.fraction * names.size())));
    Rng rng(derive_seed(config.shared.seed, 0x73616d706c65ull /* "sample" */, static_cast<uint64_t>(round)));
    for (size_t i = names.size(); i > 1; --i) std::swap(names[i - 1], names[rng.next_u64() % i]);
    names.resize(std::min(wanted, names.size()));
    std::sort(names.begin(), names.end());
    return names;
  }

  bool round_complete() const {
    for (const std::string& name : sampled)
      if (!results.count(name) && alive(participants.at(name))) return false;
    return true;
  }

  void wait_for_participants(const std::atomic<bool>* stop) {
    const auto enough = [&] { return static_cast<int64_t>(alive_names().size()) >= config.server.min_clients; };
    if (enough()) return;
    say("waiting for " + std::to_string(config.server.min_clients) + " participants (" +
        std::to_string(alive_names().size()) + " present)");
    pump(config.server.join_timeout_s, enough, stop);
    if (!enough() && !(stop && *stop))
      throw Error("only " + std::to_string(alive_names().size()) + " of the " + std::to_string(config.server.min_clients) +
                  " participants needed joined within server.join_timeout (" + std::to_string(config.server.join_timeout_s) + " s)");
  }

  // What a participant does this round, decided here so that participants need no config edits:
  // its local steps and learning rate (its own overrides included) and the strategy's settings.
  std::map<std::string, ConfigValue> round_settings(int64_t round, const ParticipantConfig& p) const {
    std::map<std::string, ConfigValue> settings = strategy->fit_config(round);
    settings["steps"] = p.train.steps;
    settings["lr"] = p.train.optimizer.lr;
    settings["run_id"] = run_id;
    if (dp && (dp->options().mode == DpMode::client_fixed || dp->options().mode == DpMode::client_adaptive))
      settings["clip_norm"] = dp->clip_norm();
    if (p.partition.strategy != PartitionStrategy::all) settings["examples"] = round_examples(p);
    return settings;
  }

  // This participant's share of data per round, from every participant's volume (fed/partition.h).
  int64_t round_examples(const ParticipantConfig& p) const {
    std::vector<ParticipantVolume> volumes;
    size_t index = 0;
    for (const ParticipantConfig& q : config.participants) {
      if (q.name == p.name) index = volumes.size();
      volumes.push_back(volume_of(q.name));
    }
    return examples_per_round(p.partition, volumes, index, config.server.rounds);
  }

  // As the participant reported it at its last join, or as the checkpoint knew it.
  ParticipantVolume volume_of(const std::string& name) const {
    if (const auto it = participants.find(name); it != participants.end()) return it->second.volume;
    const auto it = checkpointed_volumes.find(name);
    return it == checkpointed_volumes.end() ? ParticipantVolume{} : it->second;
  }

  // Adds a round to the privacy accountant; without noise there is no finite ε to track.
  void account(double sampling_rate) {
    if (dp->options().noise_multiplier > 0) accountant.add_steps(sampling_rate, dp->options().noise_multiplier, 1);
    sampling_rates.push_back(sampling_rate);
  }

  double epsilon_spent() const {
    if (dp->options().noise_multiplier == 0) return std::numeric_limits<double>::infinity();
    return accountant.epsilon(dp->options().delta);
  }

  // True when one more round (at the expected sampling rate) would spend more than the target ε.
  bool privacy_budget_exhausted() const {
    if (!dp || dp->options().target_epsilon <= 0 || dp->options().noise_multiplier == 0) return false;
    RdpAccountant next = accountant;
    next.add_steps(expected_sampling_rate(), dp->options().noise_multiplier, 1);
    return next.epsilon(dp->options().delta) > dp->options().target_epsilon;
  }

  double expected_sampling_rate() const {
    const double n = static_cast<double>(config.participants.size());
    return std::min(1.0, std::max<double>(static_cast<double>(config.server.min_clients), std::ceil(config.server.fraction * n)) / n);
  }

  // One attempt at a round; false when too few results came back.
  bool try_round(int64_t round, const std::atomic<bool>* stop) {
    current_round = round;
    // A repeated round counts the time and traffic of its failed attempts too.
    const bool repeated = record.round == round;
    record = repeated ? RoundRecord{.round = round, .bytes_sent = record.bytes_sent, .bytes_received = record.bytes_received,
                                    .attempts = record.attempts + 1}
                      : RoundRecord{.round = round};
    results.clear();
    clipped_bits.clear();
    // Heartbeats queued during the last evaluation and checkpoint tell who is alive now.
    while (auto envelope = socket->receive(std::chrono::milliseconds(0))) handle(*envelope);
    sampled = sample(round);
    monitor.set_round(round);
    round_open = true;
    for (const std::string& name : sampled) send_fit(name);
    pump(config.server.round_timeout_s, [&] { return round_complete(); }, stop);
    round_open = false;
    if (stop && *stop) return false;
    if (static_cast<int64_t>(results.size()) < config.server.min_results) {
      say("round " + std::to_string(round) + ": " + std::to_string(results.size()) + " results, " +
          std::to_string(config.server.min_results) + " needed; repeating the round");
      return false;
    }
    std::vector<ClientResult> ordered;
    std::vector<double> bits;
    for (auto& [name, result] : results) {  // name order
      record.contributors.push_back(name);
      ordered.push_back(std::move(result));
      bits.push_back(clipped_bits.count(name) ? clipped_bits.at(name) : 0.0);
    }
    if (dp) {  // the strategy sees one result: the noisy mean update applied to the global adapter
      ordered = {ClientResult{"dp-mean", dp->privatize(round, global.named_tensors(), ordered, bits), 1}};
      account(static_cast<double>(sampled.size()) / static_cast<double>(config.participants.size()));
      record.epsilon = epsilon_spent();
    }
    const NamedTensors aggregated = strategy->aggregate(round, global.named_tensors(), ordered);
    std::vector<NamedTensor> wire = to_wire(aggregated);
    load_adapter_tensors(global, wire);
    if (eval_model) record.eval = beside_messages([&] { return evaluate_global(); });
    checkpoint(round);
    record.seconds = seconds_since(round_started);
    report();
    return true;
  }

  void report() {
    double loss_sum = 0;
    nlohmann::json losses = nlohmann::json::object();
    for (const auto& [name, loss] : record.train_loss) {
      loss_sum += loss;
      losses[name] = loss;
    }
    const double mean_loss = record.train_loss.empty() ? 0.0 : loss_sum / record.train_loss.size();
    std::string line = "round " + std::to_string(record.round) + "/" + std::to_string(config.server.rounds);
    char text[64];
    if (record.round == 0) {
      line += " (the starting adapter)";
    } else {
      std::snprintf(text, sizeof text, " | train loss %.4f", mean_loss);
      line += " | " + std::to_string(record.contributors.size()) + " of " + std::to_string(sampled.size()) + " results" + text;
    }
    if (eval_model) line += " | eval " + describe(record.eval);
    if (dp && record.round > 0) {
      std::snprintf(text, sizeof text, " | ε %.3f (δ %.0e)", record.epsilon, dp->options().delta);
      line += text;
    }
    std::snprintf(text, sizeof text, " | %.1f s", record.seconds);
    if (record.attempts > 1) line += " | attempt " + std::to_string(record.attempts);
    line += " | " + format_megabytes(record.bytes_sent) + " out, " + format_megabytes(record.bytes_received) + " in" + text;
    say(line);
    nlohmann::json entry = {{"round", record.round}, {"sampled", sampled}, {"contributors", record.contributors},
                            {"train_loss", losses}, {"examples", record.examples},
                            {"bytes_sent", record.bytes_sent}, {"bytes_received", record.bytes_received},
                            {"attempts", record.attempts},
                            {"seconds", record.seconds}};
    if (!record.dp_sgd_epsilon.empty()) entry["dp_sgd_epsilon"] = record.dp_sgd_epsilon;
    if (dp && record.round > 0) {
      entry["epsilon"] = record.epsilon;
      entry["clip_norm"] = dp->clip_norm();
    }
    if (eval_model) {
      entry["eval_loss"] = record.eval.loss;
      entry["eval_accuracy"] = record.eval.accuracy();
      entry["eval_exact_match"] = record.eval.exact_matches;
      entry["eval_examples"] = record.eval.examples;
      entry["eval_exact_match_examples"] = record.eval.generated_examples;
    }
    metrics->write(entry);
    history.push_back(record);
  }

  EvalResult evaluate_global() const {
    return evaluate(*eval_model, &global, eval_run.eval, eval_run.tokenizer.get(), config.shared.eval,
                    eval_run.stop_ids);
  }

  // Round 0: the starting global adapter, the baseline the rounds are measured against.
  void evaluate_initial() {
    if (!eval_model) return;
    record = RoundRecord{.round = 0};
    const auto start = Clock::now();
    record.eval = beside_messages([&] { return evaluate_global(); });
    record.seconds = seconds_since(start);
    report();
  }

  void tell_participants_to_stop() {
    Message bye{.type = MessageType::shutdown, .round = current_round};
    for (const auto& [name, p] : participants) {
      bye.client_id = name;
      send(p.peer, bye);
    }
  }

  // Whatever ends the run — the last round, a stop request or an error — participants are told.
  LoraAdapter run(const std::atomic<bool>* stop) {
    try {
      run_rounds(stop);
    } catch (...) {
      tell_participants_to_stop();
      throw;
    }
    tell_participants_to_stop();
    global.save_peft((fs::path(config.shared.output_dir) / "adapter").string(), config.shared.model_dir);
    say("saved the global adapter to " + (fs::path(config.shared.output_dir) / "adapter").string());
    return global;
  }

  void run_rounds(const std::atomic<bool>* stop) {
    constexpr int kAttempts = 3;
    if (first_round == 1) evaluate_initial();
    for (int64_t round = first_round; round <= config.server.rounds && !(stop && *stop); ++round) {
      if (privacy_budget_exhausted()) {
        say("stopping before round " + std::to_string(round) + ": it would spend more than the target ε " +
            std::to_string(dp->options().target_epsilon));
        break;
      }
      bool done = false;
      round_started = Clock::now();
      for (int attempt = 0; attempt < kAttempts && !done && !(stop && *stop); ++attempt) {
        wait_for_participants(stop);
        done = try_round(round, stop);
      }
      if (!done && !(stop && *stop))
        throw Error("round " + std::to_string(round) + " failed " + std::to_string(kAttempts) + " times (see server.min_results)");
    }
  }
};

Server::Server(const FederationConfig& config, bool resume, std::ostream& log)
    : impl_(std::make_unique<Impl>(config, resume, log)) {}
Server::~Server() = default;
std::string Server::endpoint() const { return impl_->socket->endpoint(); }
LoraAdapter Server::run(const std::atomic<bool>* stop) { return impl_->run(stop); }
const std::vector<RoundRecord>& Server::history() const { return impl_->history; }
void Server::participant_exited(const std::string& name, const std::string& report) {
  std::lock_guard lock(impl_->exits_mutex);
  impl_->exits.emplace_back(name, report);
}

}  // namespace fe::fed
