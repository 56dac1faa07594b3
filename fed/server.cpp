#include "fed/server.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <limits>
#include <mutex>
#include <ostream>
#include <random>

#include "engine/metrics_log.h"
#include "engine/model_files.h"
#include "engine/safetensors.h"
#include "engine/train_run.h"
#include "fed/adapter_wire.h"
#include "fed/monitor.h"
#include "fed/roster.h"
#include "fed/run_lock.h"
#include "fed/server_checkpoint.h"
#include "fed/server_inbox.h"
#include "fed/update_bounds.h"

namespace fe::fed {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string new_run_id() {
  std::random_device entropy;
  char text[17];
  std::snprintf(text, sizeof text, "%08x%08x", entropy(), entropy());
  return text;
}

// The strategy the config names, with its sampling, and a robust rule or DP (the config allows one
// of them) wrapped around it.
std::unique_ptr<Strategy> configured_strategy(const FederationConfig& config) {
  StrategyOptions options = config.server.strategy;
  options.sampling = {
      .fraction = config.server.fraction, .min_clients = config.server.min_clients, .seed = config.shared.seed};
  std::unique_ptr<Strategy> strategy = make_strategy(options);
  if (config.server.aggregation.rule != RobustRule::mean)
    return std::make_unique<RobustStrategy>(std::move(strategy), config.server.aggregation);
  if (config.server.privacy.mode == DpMode::off) return strategy;
  return std::make_unique<DpStrategy>(std::move(strategy), config.server.privacy, config.participants.size());
}

}  // namespace

struct Server::Impl {
  const FederationConfig& config;
  std::ostream& log;
  RunLock run_lock;  // first: nothing in the run directory is opened before it is ours
  Roster roster;
  Monitor monitor;
  std::unique_ptr<Strategy> strategy;
  DpStrategy* dp = nullptr;  // the strategy itself when DP wraps it
  LoraAdapter global;
  std::vector<TensorSpec> specs;
  std::optional<LlamaModel> eval_model;
  LoadedRun eval_run;
  RoundRecord record;  // of the round in progress (or the last one, between rounds)
  std::unique_ptr<ServerInbox> inbox;
  std::optional<MonitorEndpoint> monitor_endpoint;
  std::optional<MetricsLog> metrics;
  int64_t first_round = 1;
  std::string run_id;  // tells participants' state of this run from an earlier one's
  std::vector<RoundRecord> history;
  Clock::time_point last_table = Clock::now();
  std::mutex exits_mutex;
  std::vector<std::pair<std::string, std::string>> exits;  // (participant, report) from participant_exited

  Clock::time_point round_started;          // of the round's first attempt
  std::map<std::string, int64_t> fit_sent;  // the round each participant was last sent a fit for

  Impl(const FederationConfig& c, bool resume, std::ostream& l)
      : config(c),
        log(l),
        run_lock(c.shared.output_dir),
        roster(c.participant_names(), c.server.heartbeat_s),
        monitor(roster, c.server.rounds) {
    const LlamaConfig model = LlamaConfig::load(c.shared.model_dir);
    global = LoraAdapter::init(model, c.shared.lora, c.shared.seed, DType::f32);
    specs = adapter_specs(global);
    strategy = configured_strategy(c);
    dp = dynamic_cast<DpStrategy*>(strategy.get());
    run_id = new_run_id();
    if (resume) restore(model);
    if (!c.shared.eval_file.empty()) {
      TrainConfig eval_config = c.shared;
      eval_config.device = Device::cpu;  // where the global adapter lives; the server needs no GPU
      eval_run = load_run(eval_config, false);
      eval_model.emplace(eval_run.weights);
    }
    fs::create_directories(c.shared.output_dir);
    metrics.emplace((fs::path(c.shared.output_dir) / "metrics.jsonl").string(), resume);
    const bool needs_clipped_bit = dp && dp->options().mode == DpMode::client_adaptive;
    inbox = std::make_unique<ServerInbox>(c, roster, specs, needs_clipped_bit, record,
                                          [this](const std::string& m) { say(m); });
    say("listening on " + inbox->endpoint() + " (" +
        (c.server.server_key.empty() ? "plain TCP, loopback" : "CurveZMQ") + "), strategy " + strategy->name() + ", " +
        std::to_string(c.server.rounds) + " rounds");
    if (!c.server.monitor_address.empty()) {
      monitor_endpoint.emplace(monitor, c.server.monitor_address);
      const std::string host = c.server.monitor_address.substr(0, c.server.monitor_address.rfind(':'));
      say("monitoring on http://" + host + ":" + std::to_string(monitor_endpoint->port()) + "/metrics and /status");
    }
  }

  void say(const std::string& line) { log << "[server] " << line << std::endl; }

  fs::path checkpoint_dir() const { return fs::path(config.shared.output_dir) / "checkpoint"; }

  void restore(const LlamaConfig& model) {
    const ServerCheckpoint checkpoint = load_server_checkpoint(checkpoint_dir(), model, global, *strategy, dp);
    first_round = checkpoint.round + 1;
    if (!checkpoint.run_id.empty()) run_id = checkpoint.run_id;
    // A participant's share of data does not shrink while the largest one has yet to rejoin.
    roster.restore_volumes(checkpoint.volumes);
    restore_metrics_file((fs::path(config.shared.output_dir) / "metrics.jsonl").string(), checkpoint.metrics_line);
    say("resuming after round " + std::to_string(checkpoint.round) + " from " + checkpoint_dir().string());
  }

  // --- messages -----------------------------------------------------------------------------

  // Handles messages until done() or the deadline (or a stop request), and keeps the status
  // current: participants whose process ended or who went silent, the periodic table.
  template <class Done>
  void pump(double timeout_s, Done&& done, const std::atomic<bool>* stop) {
    const auto start = Clock::now();
    while (!done() && seconds_since(start) < timeout_s && !(stop && *stop)) {
      inbox->handle_next(std::chrono::milliseconds(100));
      note_presence();
      if (config.server.status_every_s > 0 && seconds_since(last_table) >= config.server.status_every_s) {
        log << render_table(monitor.snapshot()) << std::flush;
        last_table = Clock::now();
      }
    }
  }

  void note_presence() {
    std::vector<std::pair<std::string, std::string>> ended;
    {
      std::lock_guard lock(exits_mutex);
      ended.swap(exits);
    }
    for (const auto& [name, report] : ended) inbox->participant_gone(name, report);
    inbox->note_absent();
  }

  // Runs `work` on another thread while this one keeps handling messages (heartbeats stay heard).
  template <class Work>
  auto beside_messages(Work&& work) {
    auto result = std::async(std::launch::async, std::forward<Work>(work));
    pump(
        std::numeric_limits<double>::infinity(),
        [&] { return result.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }, nullptr);
    return result.get();
  }

  // --- rounds -------------------------------------------------------------------------------

  void wait_for_participants(const std::atomic<bool>* stop) {
    const auto present = [&] { return static_cast<int64_t>(roster.alive_names().size()); };
    const auto enough = [&] { return present() >= config.server.min_clients; };
    if (enough()) return;
    say("waiting for " + std::to_string(config.server.min_clients) + " participants (" + std::to_string(present()) +
        " present)");
    pump(config.server.join_timeout_s, enough, stop);
    if (!enough() && !(stop && *stop))
      throw Error("only " + std::to_string(present()) + " of the " + std::to_string(config.server.min_clients) +
                  " participants needed joined within server.join_timeout (" +
                  std::to_string(config.server.join_timeout_s) + " s)");
  }

  // What a participant does this round, decided here so that participants need no config edits:
  // its local steps and learning rate (its own overrides included), its share of data, and the
  // strategy's settings.
  std::map<std::string, ConfigValue> round_settings(int64_t round, const ParticipantConfig& p) const {
    std::map<std::string, ConfigValue> settings = strategy->fit_config(round);
    settings["steps"] = p.train.steps;
    settings["lr"] = p.train.optimizer.lr;
    settings["run_id"] = run_id;
    if (p.partition.strategy != PartitionStrategy::all) settings["examples"] = round_share(config, roster, p.name);
    return settings;
  }

  void send_fit(const std::string& name) {
    Message fit{.type = MessageType::fit, .round = record.round, .client_id = name};
    fit.config = round_settings(record.round, config.participant(name));
    fit.tensors = to_wire(global.named_tensors());
    inbox->send(roster.peer_of(name), fit);
    fit_sent[name] = record.round;
  }

  // A repeated attempt asks only those it has no result from and that are not still training
  // the fit an earlier attempt sent them: a participant never trains a round twice because the
  // server gave up waiting on it.
  bool needs_fit(const std::string& name) const {
    const auto sent = fit_sent.find(name);
    return !inbox->has_result(name) &&
           !(sent != fit_sent.end() && sent->second == record.round && roster.training(name));
  }

  // A repeated round counts the time and traffic of its failed attempts too, and keeps the
  // figures of the results it keeps (ServerInbox::open_round).
  void start_attempt(int64_t round) {
    record = record.round == round ? RoundRecord{.round = round,
                                                 .train_loss = record.train_loss,
                                                 .dp_sgd_epsilon = record.dp_sgd_epsilon,
                                                 .examples = record.examples,
                                                 .bytes_sent = record.bytes_sent,
                                                 .bytes_received = record.bytes_received,
                                                 .attempts = record.attempts + 1}
                                   : RoundRecord{.round = round};
    // Heartbeats queued during the last evaluation and checkpoint tell who is alive now.
    while (inbox->handle_next(std::chrono::milliseconds(0))) {
    }
  }

  bool round_complete() const {
    for (const std::string& name : record.sampled)
      if (!inbox->answered(name) && roster.alive(name)) return false;
    return true;
  }

  // Results, in participant-name order and within server.max_update_norm, until every sampled
  // participant answered or went silent, or the round timed out; nullopt when too few came back
  // (the round stays open for the next attempt; closed when the norm bound refused some) or a
  // stop was asked for.
  std::optional<std::vector<ClientResult>> collect(const std::atomic<bool>* stop) {
    pump(
        config.server.round_timeout_s, [&] { return round_complete(); }, stop);
    if (stop && *stop) {
      inbox->close_round();
      return std::nullopt;
    }
    if (too_few(inbox->results().size())) return std::nullopt;
    std::vector<ClientResult> results;
    for (auto& [name, result] : inbox->close_round()) results.push_back(std::move(result));  // name order
    bound_norms(results);
    if (too_few(results.size())) return std::nullopt;
    record.set_contributors(results);
    return results;
  }

  bool too_few(size_t results) {
    if (static_cast<int64_t>(results) >= config.server.min_results) return false;
    say("round " + std::to_string(record.round) + ": " + std::to_string(results) + " results, " +
        std::to_string(config.server.min_results) + " needed; repeating the round");
    return true;
  }

  // A result over the bound is clipped (logged) or refused (its sender hears why).
  void bound_norms(std::vector<ClientResult>& results) {
    const std::string round = "round " + std::to_string(record.round);
    for (const NormVerdict& v : bound_update_norms(config.server.max_update_norm, global.named_tensors(), results))
      if (v.refused)
        inbox->refuse(roster.peer_of(v.client_id), v.client_id, round + " result refused: " + v.reason(), record.round);
      else
        say(round + ": clipped the update of " + v.client_id + ": " + v.reason());
  }

  // Privacy (when DP wraps the strategy) and the strategy's aggregate; the outcome becomes the
  // global adapter unless it holds a NaN or Inf: then the adapter and the strategy's state stay
  // as they were (false).
  bool aggregate(int64_t round, const std::vector<ClientResult>& results) {
    const StrategySnapshot before(*strategy, dp);
    const NamedTensors next = strategy->aggregate(round, global.named_tensors(), results);
    if (const std::optional<std::string> poisoned = non_finite_reason(next)) {
      before.restore();
      say("round " + std::to_string(round) + " not committed: the aggregate's " + *poisoned +
          "; the global adapter stays as it was");
      return false;
    }
    if (dp) record.epsilon = dp->epsilon_spent();
    copy_named_tensors(global.named_tensors(), next,
                       "the " + strategy->name() + " aggregate of round " + std::to_string(round));
    return true;
  }

  EvalResult evaluate_global() const {
    return evaluate(*eval_model, &global, eval_run.eval, eval_run.tokenizer.get(), config.shared.eval,
                    eval_run.stop_ids);
  }

  void evaluate_round() {
    if (eval_model) record.eval = beside_messages([&] { return evaluate_global(); });
  }

  void checkpoint(int64_t round) {
    ServerCheckpoint checkpoint{
        .round = round, .run_id = run_id, .metrics_line = round_metrics(record, eval_model.has_value(), dp)};
    for (const ParticipantConfig& p : config.participants)
      if (const ParticipantVolume volume = roster.volume_of(p.name); volume.examples > 0)
        checkpoint.volumes[p.name] = volume;
    save_server_checkpoint(checkpoint_dir(), checkpoint, global, config.shared.model_dir, *strategy, dp);
  }

  void report() {
    say(round_line(record, config.server.rounds, eval_model.has_value(), dp));
    metrics->write(round_metrics(record, eval_model.has_value(), dp));
    history.push_back(record);
  }

  // One attempt at a round: sample → send → collect → privacy and aggregate → evaluate →
  // checkpoint → report; false when too few results came back.
  bool try_round(int64_t round, const std::atomic<bool>* stop) {
    start_attempt(round);
    record.sampled = strategy->sample(round, roster.alive_names());
    monitor.set_round(round);
    inbox->open_round([this](const std::string& name) { send_fit(name); });
    for (const std::string& name : record.sampled)
      if (needs_fit(name)) send_fit(name);
    const std::optional<std::vector<ClientResult>> results = collect(stop);
    if (!results) return false;
    if (!aggregate(round, *results)) return true;  // not committed: the round is skipped
    evaluate_round();
    record.seconds = seconds_since(round_started);
    checkpoint(round);
    report();
    return true;
  }

  // Round 0: the starting global adapter, the baseline the rounds are measured against.
  void evaluate_initial() {
    if (!eval_model) return;
    record = RoundRecord{.round = 0};
    const auto start = Clock::now();
    evaluate_round();
    record.seconds = seconds_since(start);
    report();
  }

  void tell_participants_to_stop() {
    Message bye{.type = MessageType::shutdown, .round = record.round};
    for (const auto& [name, peer] : roster.joined_peers()) {
      bye.client_id = name;
      inbox->send(peer, bye);
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
    const std::string adapter_dir = (fs::path(config.shared.output_dir) / "adapter").string();
    global.save_peft(adapter_dir, config.shared.model_dir);
    copy_model_companion_files(config.shared.model_dir, config.shared.tokenizer_path, adapter_dir);
    say("saved the global adapter to " + adapter_dir);
    return global;
  }

  void run_rounds(const std::atomic<bool>* stop) {
    constexpr int kAttempts = 3;
    if (first_round == 1) evaluate_initial();
    for (int64_t round = first_round; round <= config.server.rounds && !(stop && *stop); ++round) {
      if (dp && dp->budget_exhausted()) {
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
        throw Error("round " + std::to_string(round) + " failed " + std::to_string(kAttempts) +
                    " times (see server.min_results)");
    }
  }
};

Server::Server(const FederationConfig& config, bool resume, std::ostream& log)
    : impl_(std::make_unique<Impl>(config, resume, log)) {}
Server::~Server() = default;
std::string Server::endpoint() const { return impl_->inbox->endpoint(); }
LoraAdapter Server::run(const std::atomic<bool>* stop) { return impl_->run(stop); }
const std::vector<RoundRecord>& Server::history() const { return impl_->history; }
void Server::participant_exited(const std::string& name, const std::string& report) {
  std::lock_guard lock(impl_->exits_mutex);
  impl_->exits.emplace_back(name, report);
}

}  // namespace fe::fed
