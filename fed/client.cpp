#include "fed/client.h"

#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <ostream>
#include <thread>

#include "engine/communicator.h"
#include "fed/preflight.h"
#include "fed/processes.h"
#include "fed/resources.h"
#include "fed/round_trainer.h"
#include "fed/transport.h"

namespace fe::fed {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The socket is shared by the main thread (fit/results) and the heartbeat thread.
class ServerConnection {
 public:
  ServerConnection(const FederationConfig& config, const ParticipantConfig& me, const std::string& endpoint) {
    std::optional<CurveKeyPair> keys;
    std::string server_public;
    if (!me.key.empty()) {
      keys = load_keys(me.key);
      if (keys->secret_key.empty())
        throw Error(me.key + ": participant " + me.name + " needs its secret key (a .key file)");
      server_public = load_keys(config.server.server_public_key).public_key;
    }
    socket_ = std::make_unique<ClientSocket>(endpoint.empty() ? config.server.address : endpoint, keys, server_public);
  }
  void send(const Message& m) {
    std::lock_guard lock(mutex_);
    socket_->send(encode(m));
  }
  std::optional<Message> receive(milliseconds timeout, std::ostream& log) {
    std::optional<std::string> bytes;
    {
      std::lock_guard lock(mutex_);
      bytes = socket_->receive(timeout);
    }
    if (!bytes) return std::nullopt;
    try {
      return decode(*bytes);
    } catch (const ProtocolError& e) {
      log << "ignored an undecodable message from the server: " << e.what() << std::endl;
      return std::nullopt;
    }
  }

 private:
  std::mutex mutex_;
  std::unique_ptr<ClientSocket> socket_;
};

// How long a rank waits for the others (to connect, or inside a collective): long enough for a
// slow rank to load its data, short enough that a dead rank 0 does not leave the others hanging.
constexpr auto kRankTimeout = std::chrono::seconds(300);
// Ranks other than 0 wait in a broadcast for rank 0's next command; rank 0 sends `idle` this often
// while it waits for the server, well within kRankTimeout.
constexpr auto kIdleCommandInterval = std::chrono::seconds(1);
// How often a participant that has not heard from the server yet says it is still waiting.
constexpr auto kWaitingNoteInterval = std::chrono::seconds(10);

// One rank of a participant: rank 0 speaks with the server (joins, heartbeats from their own
// thread, fit messages, results) and passes each round on to the other ranks; they follow it.
class ParticipantRank {
 public:
  ParticipantRank(const FederationConfig& config, const ParticipantConfig& me, const std::string& endpoint,
                  std::unique_ptr<Communicator> ranks, int local_rank, std::ostream& log)
      : log_(log),
        ranks_(std::move(ranks)),
        heartbeat_s_(config.server.heartbeat_s),
        server_address_(endpoint.empty() ? config.server.address : endpoint) {
    trainer_.emplace(config, me, *ranks_, local_rank, log);
    if (ranks_->rank() == 0) connection_.emplace(config, me, endpoint);
  }

  int run(const std::atomic<bool>* stop) {
    if (ranks_->rank() != 0) return trainer_->follow(stop);
    const std::jthread heartbeat(
        [this](std::stop_token done) { send_heartbeats(done); });  // stopped however serve ends
    return serve(stop);
  }

 private:
  void send_heartbeats(const std::stop_token& done) {
    auto next = Clock::now();
    while (!done.stop_requested()) {
      if (Clock::now() >= next) {
        try {
          Message heartbeat = trainer_->status_message(MessageType::heartbeat);
          add_resource_figures(resources_.sample(), heartbeat.metrics);
          trainer_->add_rank_gpu_figures(heartbeat.metrics);
          connection_->send(heartbeat);
        } catch (const std::exception& e) {  // the server is unreachable for now; keep trying
          log_ << trainer_->tag() << "heartbeat not sent: " << e.what() << std::endl;
        }
        next = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(heartbeat_s_));
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }

  void note_welcome() {
    if (!welcomed_)
      log_ << trainer_->tag() << "joined the federation"
           << (ranks_->size() > 1 ? " with " + std::to_string(ranks_->size()) + " ranks" : std::string()) << std::endl;
    welcomed_ = true;
  }

  void fit(Message& m) {
    note_welcome();  // a fit may overtake the welcome
    if (ranks_->size() > 1) trainer_->command(RankCommand::fit, encode(m));
    try {
      connection_->send(trainer_->train_round(m));
    } catch (const std::exception& e) {  // the server's round timeout covers the missing result
      log_ << trainer_->tag() << "could not train round " << m.round << ": " << e.what() << std::endl;
      if (ranks_->size() > 1 && !dynamic_cast<const RoundNotStarted*>(&e)) throw;
    }
  }

  // Until the server answers: one line saying where it is expected, then one every
  // kWaitingNoteInterval, so a wrong address or a server not started yet shows.
  void note_waiting(Clock::time_point since, Clock::time_point& last_note) {
    const auto waited = Clock::now() - since;
    if (welcomed_ || (last_note != since && Clock::now() - last_note < kWaitingNoteInterval)) return;
    log_ << trainer_->tag() << (last_note == since ? "waiting for the server at " : "still waiting for the server at ")
         << server_address_;
    if (last_note != since) log_ << " (" << std::chrono::duration_cast<std::chrono::seconds>(waited).count() << " s)";
    log_ << std::endl;
    last_note = Clock::now();
  }

  // The next message. Of fits that queued up while this participant trained, only the newest is
  // trained (the server moved on from the others); a shutdown behind them comes first.
  std::optional<Message> next_message() {
    if (!backlog_.empty()) {
      Message m = std::move(backlog_.front());
      backlog_.pop_front();
      return m;
    }
    std::optional<Message> m = connection_->receive(milliseconds(200), log_);
    while (m && m->type == MessageType::fit) {
      std::optional<Message> later = connection_->receive(milliseconds(0), log_);
      if (!later) break;
      if (later->type == MessageType::shutdown) return later;
      if (later->type != MessageType::fit) {
        backlog_.push_back(std::move(*later));
        continue;
      }
      log_ << trainer_->tag() << "skipped round " << m->round << ": the server has sent round " << later->round
           << " since" << std::endl;
      m = std::move(later);
    }
    return m;
  }

  int serve(const std::atomic<bool>* stop) {
    auto last_join = Clock::now() - std::chrono::hours(1);
    const auto started = Clock::now();
    auto last_note = started;
    while (!(stop && *stop)) {
      note_waiting(started, last_note);
      if (!welcomed_ && Clock::now() - last_join > std::chrono::seconds(2)) {
        connection_->send(trainer_->status_message(MessageType::join));
        last_join = Clock::now();
      }
      if (ranks_->size() > 1 && Clock::now() - trainer_->last_command() > kIdleCommandInterval) {
        trainer_->command(RankCommand::idle);
        trainer_->share_gpus();
      }
      std::optional<Message> m = next_message();
      if (!m) continue;
      switch (m->type) {
        case MessageType::welcome:
          note_welcome();
          break;
        case MessageType::reject: {
          const auto reason = m->config.find("reason");
          const std::string* text = reason != m->config.end() ? std::get_if<std::string>(&reason->second) : nullptr;
          log_ << trainer_->tag() << "the server refused a message: " << (text ? *text : "no reason given")
               << std::endl;
          // A refusal of the participant itself (its name is taken) ends one that never joined.
          const auto final = m->config.find("final");
          if (!welcomed_ && final != m->config.end() && final->second == ConfigValue(true)) {
            if (ranks_->size() > 1) trainer_->command(RankCommand::stop);
            return 1;
          }
          break;
        }
        case MessageType::fit:
          fit(*m);
          break;
        case MessageType::shutdown:
          log_ << trainer_->tag() << "the server ended the run" << std::endl;
          if (ranks_->size() > 1) trainer_->command(RankCommand::stop);
          return 0;
        default:
          log_ << trainer_->tag() << "ignored a " << message_type_name(m->type) << " message" << std::endl;
      }
    }
    if (ranks_->size() > 1) trainer_->command(RankCommand::stop);
    connection_->send(trainer_->status_message(MessageType::shutdown));
    return 1;
  }

  std::ostream& log_;
  std::unique_ptr<Communicator> ranks_;
  double heartbeat_s_;
  std::string server_address_;
  std::optional<RoundTrainer> trainer_;
  std::optional<ServerConnection> connection_;  // rank 0 only
  ResourceSampler resources_;             // the heartbeat thread's
  bool welcomed_ = false;
  std::deque<Message> backlog_;  // messages read past a fit while looking for newer ones
};

}  // namespace

int run_client(const FederationConfig& config, const std::string& name, const std::string& endpoint, std::ostream& log,
               const std::atomic<bool>* stop, const RankInfo& rank) {
  const ParticipantConfig& me = config.participant(name);
  check_participant_files(config, me);
  if (rank.world_size != me.world_size())
    throw Error(config.path + ": participant " + name + " has " + std::to_string(me.world_size()) +
                " ranks over its nodes, but this process was started as rank " + std::to_string(rank.rank) + " of " +
                std::to_string(rank.world_size) + " (WORLD_SIZE)");
  // GPU ranks sum their gradients in GPU memory with NCCL, CPU ranks with Gloo.
  const CommBackend backend = me.train.device == Device::cuda ? CommBackend::nccl : CommBackend::gloo;
  std::unique_ptr<Communicator> ranks = connect_ranks(backend, rank, kRankTimeout);
  ParticipantRank participant(config, me, endpoint, std::move(ranks), rank.local_rank, log);
  return participant.run(stop);
}

int run_participant_node(const FederationConfig& config, const std::string& name, size_t node,
                         const std::string& endpoint, const std::string& self_executable, std::ostream& log,
                         const std::atomic<bool>* stop) {
  const ParticipantConfig& me = config.participant(name);
  if (node >= me.nodes.size())
    throw Error(config.path + ": participant " + name + " has " + std::to_string(me.nodes.size()) +
                " node(s); there is no node " + std::to_string(node));
  if (me.world_size() == 1) return run_client(config, name, endpoint, log, stop);
  const std::vector<std::pair<std::string, std::string>> node_env = node_environment(me, node);
  Children ranks;
  for (int local = 0; local < me.nodes[node].ranks; ++local) {
    ProcessSpec spec{
        .args = {self_executable, "client", config.path, "--name", name}, .env = node_env, .end_with_parent = true};
    if (!endpoint.empty()) spec.args.insert(spec.args.end(), {"--server", endpoint});
    spec.env.emplace_back("RANK", std::to_string(me.first_rank(node) + local));
    spec.env.emplace_back("LOCAL_RANK", std::to_string(local));
    ranks.add(spawn_process(spec), "rank " + std::to_string(me.first_rank(node) + local));
  }
  log << "[" << name << "] node " << node << " (" << me.nodes[node].host << ") started ranks " << me.first_rank(node)
      << ".." << me.first_rank(node) + me.nodes[node].ranks - 1 << " of " << me.world_size() << std::endl;
  // Every rank must live: a rank that fails leaves the others waiting in a collective.
  int status = 0;
  while (!ranks.empty() && !(stop && *stop)) {
    for (const Children::Exit& exit : ranks.reap())
      if (exit.failed) {
        log << "[" << name << "] " << exit.name << " stopped (" << exit.how << "); stopping the node's other ranks"
            << std::endl;
        status = 1;
        ranks.terminate_all();
      }
    std::this_thread::sleep_for(milliseconds(100));
  }
  ranks.stop_all(std::chrono::seconds(stop && *stop ? 0 : 10));
  return status != 0 || (stop && *stop) ? 1 : 0;
}

}  // namespace fe::fed
