#include "fed/client.h"

#include <chrono>
#include <fstream>
#include <filesystem>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <thread>

#include "engine/accountant.h"
#include "engine/durable_file.h"
#include "engine/communicator.h"
#include "engine/train_run.h"
#include "kernels/elementwise.h"
#include "fed/adapter_wire.h"
#include "fed/partition.h"
#include "fed/privacy.h"
#include "fed/processes.h"
#include "fed/resources.h"
#include "fed/transport.h"

namespace fe::fed {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Every participant trains the same adapter structure: the server aggregates tensor by tensor.
void require_shared_adapter(const FederationConfig& config, const ParticipantConfig& me) {
  const LoraConfig &mine = me.train.lora, &shared = config.shared.lora;
  if (me.train.full_parameter || mine.rank != shared.rank || mine.alpha != shared.alpha ||
      mine.use_rslora != shared.use_rslora || mine.targets != shared.targets)
    throw Error(config.path + ": participant " + me.name +
                " overrides the adapter section; every participant must train the same LoRA structure");
}

// The socket is shared by the main thread (fit/results) and the heartbeat thread.
class Connection {
 public:
  Connection(const FederationConfig& config, const ParticipantConfig& me, const std::string& endpoint) {
    std::optional<CurveKeyPair> keys;
    std::string server_public;
    if (!me.key.empty()) {
      keys = load_keys(me.key);
      if (keys->secret_key.empty()) throw Error(me.key + ": participant " + me.name + " needs its secret key (a .key file)");
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

// DP-SGD's privacy spent by a participant over a run, one entry per round trained (sampling
// rate, noise multiplier, steps), kept in a file so that a restarted participant goes on counting
// where it stopped instead of from zero. A file of another run (another run_id) starts afresh.
class DpSgdLedger {
 public:
  explicit DpSgdLedger(std::filesystem::path file) : file_(std::move(file)) {}

  // Adds a round to run `run_id`'s ledger, writes it, and returns the ε spent for `delta`.
  double add(const std::string& run_id, double sampling_rate, double noise_multiplier, int64_t steps, double delta) {
    if (!loaded_ || run_id != run_id_) load(run_id);
    add_round(sampling_rate, noise_multiplier, steps);
    save();
    return accountant_.epsilon(delta);
  }

 private:
  void load(const std::string& run_id) {
    run_id_ = run_id;
    accountant_ = RdpAccountant();
    rounds_ = nlohmann::json::array();
    loaded_ = true;
    std::ifstream in(file_);
    const nlohmann::json saved = nlohmann::json::parse(in, nullptr, false);
    if (!in.is_open() || !saved.is_object() || saved.value("run_id", "") != run_id) return;
    const nlohmann::json rounds = saved.value("rounds", nlohmann::json::array());
    for (const nlohmann::json& round : rounds)
      add_round(round.value("sampling_rate", 1.0), round.value("noise_multiplier", 0.0), round.value("steps", int64_t{0}));
  }
  void add_round(double sampling_rate, double noise_multiplier, int64_t steps) {
    if (noise_multiplier <= 0 || steps <= 0) return;
    accountant_.add_steps(sampling_rate, noise_multiplier, steps);
    rounds_.push_back({{"sampling_rate", sampling_rate}, {"noise_multiplier", noise_multiplier}, {"steps", steps}});
  }
  void save() const {
    std::filesystem::create_directories(file_.parent_path());
    write_file_whole(file_.string(), nlohmann::json{{"run_id", run_id_}, {"rounds", rounds_}}.dump(1) + "\n");
  }

  std::filesystem::path file_;
  std::string run_id_;
  bool loaded_ = false;
  nlohmann::json rounds_ = nlohmann::json::array();
  RdpAccountant accountant_;
};

// What rank 0 tells the other ranks of its participant, as the first byte of a broadcast.
enum class RankCommand : char { idle = 'i', fit = 'f', stop = 's' };

// Ranks other than 0 wait in a broadcast for rank 0's next command; rank 0 sends `idle` this often
// while it waits for the server, well within the communicator's timeout.
constexpr auto kIdleCommandInterval = std::chrono::seconds(1);
// How long a rank waits for the others (to connect, or inside a collective): long enough for a
// slow rank to load its data, short enough that a dead rank 0 does not leave the others hanging.
constexpr auto kRankTimeout = std::chrono::seconds(300);

class Participant {
 public:
  Participant(const FederationConfig& config, const ParticipantConfig& me, const std::string& endpoint,
              std::unique_ptr<Communicator> ranks, int local_rank, std::ostream& log)
      : me_(me),
        log_(log),
        ranks_(std::move(ranks)),
        local_rank_(local_rank),
        run_(load_run(me.train, true)),
        model_(run_.weights, {.recompute_activations = me.train.recompute_activations}),
        adapter_(LoraAdapter::init(run_.weights.config, config.shared.lora, 0, DType::f32)),
        batches_(run_.train, global_micro_batch(), me.train.seed, me.train.bucket_by_length, run_.pad_id()),
        dp_sgd_ledger_(participant_dir(config, me) / "dp_sgd_ledger.json"),
        heartbeat_s_(config.server.heartbeat_s) {
    if (ranks_->rank() == 0) connection_.emplace(config, me, endpoint);
  }

  int run(const std::atomic<bool>* stop) {
    if (ranks_->rank() != 0) return follow(stop);
    const std::jthread heartbeat([this](std::stop_token done) { send_heartbeats(done); });  // stopped however serve ends
    return serve(stop);
  }

 private:
  // Rows of one micro-batch over all ranks: train.micro_batch_size per rank.
  int64_t global_micro_batch() const { return me_.train.micro_batch_size * ranks_->size(); }
  std::string tag() const {
    return "[" + me_.name + (ranks_->rank() ? " rank " + std::to_string(ranks_->rank()) : std::string()) + "] ";
  }

  Message status_message(MessageType type) const {
    Message m{.type = type, .client_id = me_.name};
    m.metrics["num_examples"] = static_cast<double>(run_.train.size());
    m.metrics["free_memory_bytes"] = free_memory_;
    m.metrics["ranks"] = ranks_->size();
    m.metrics["step"] = static_cast<double>(steps_done_);  // in the current or last round
    m.metrics["loss"] = last_loss_;
    m.metrics["training"] = training_ ? 1 : 0;
    m.metrics["tokens_per_second"] = tokens_per_s_;
    return m;
  }

  // Every rank's GPU to rank 0, for its heartbeats (fed/resources.h). All ranks call it at the same
  // points: after each training step and each idle command.
  void share_gpus() {
    if (ranks_->size() == 1) return;
    std::vector<double> slots(kGpuSlotSize * ranks_->size(), 0.0);
    pack_rank_gpu(rank_resources_.sample(), local_rank_,
                  std::span(slots).subspan(kGpuSlotSize * ranks_->rank(), kGpuSlotSize));
    ranks_->all_reduce_sum(View{slots.data(), DType::f64, {static_cast<int64_t>(slots.size())}, Device::cpu});
    if (ranks_->rank() != 0) return;
    std::lock_guard lock(rank_gpus_mutex_);
    rank_gpus_ = std::move(slots);
  }

  void command(RankCommand what, std::string payload = "") {
    std::string message = static_cast<char>(what) + payload;
    ranks_->broadcast(message, 0);
    last_command_ = Clock::now();
  }

  // Ranks other than 0: train the rounds rank 0 passes on, until it says stop (0) or this rank is
  // asked to stop (1; rank 0 then fails at its next command and the node ends).
  int follow(const std::atomic<bool>* stop) {
    for (;;) {
      if (stop && *stop) return 1;
      std::string message;
      ranks_->broadcast(message, 0);
      if (message.empty()) throw Error("rank " + std::to_string(ranks_->rank()) + ": an empty command from rank 0");
      switch (static_cast<RankCommand>(message[0])) {
        case RankCommand::idle:
          share_gpus();
          break;
        case RankCommand::fit: {
          Message fit = decode(message.substr(1));
          try {
            train_round(fit);
          } catch (const RoundNotStarted& e) {
            log_ << tag() << "could not train round " << fit.round << ": " << e.what() << std::endl;
          }
          break;
        }
        case RankCommand::stop: return 0;
        default: throw Error("rank " + std::to_string(ranks_->rank()) + ": an unknown command from rank 0");
      }
    }
  }

  void send_heartbeats(const std::stop_token& done) {
    auto next = Clock::now();
    while (!done.stop_requested()) {
      if (Clock::now() >= next) {
        try {
          Message heartbeat = status_message(MessageType::heartbeat);
          add_resource_figures(resources_.sample(), heartbeat.metrics);
          if (std::lock_guard lock(rank_gpus_mutex_); !rank_gpus_.empty()) set_rank_gpu_figures(rank_gpus_, heartbeat.metrics);
          connection_->send(heartbeat);
        } catch (const std::exception& e) {  // the server is unreachable for now; keep trying
          log_ << tag() << "heartbeat not sent: " << e.what() << std::endl;
        }
        next = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(heartbeat_s_));
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }

  void note_welcome() {
    if (!welcomed_)
      log_ << tag() << "joined the federation"
           << (ranks_->size() > 1 ? " with " + std::to_string(ranks_->size()) + " ranks" : std::string()) << std::endl;
    welcomed_ = true;
  }

  int serve(const std::atomic<bool>* stop) {
    auto last_join = Clock::now() - std::chrono::hours(1);
    while (!(stop && *stop)) {
      if (!welcomed_ && Clock::now() - last_join > std::chrono::seconds(2)) {
        connection_->send(status_message(MessageType::join));
        last_join = Clock::now();
      }
      if (ranks_->size() > 1 && Clock::now() - last_command_ > kIdleCommandInterval) {
        command(RankCommand::idle);
        share_gpus();
      }
      std::optional<Message> m = connection_->receive(milliseconds(200), log_);
      if (!m) continue;
      switch (m->type) {
        case MessageType::welcome:
          note_welcome();
          break;
        case MessageType::reject: {
          const auto reason = m->config.find("reason");
          const std::string* text = reason != m->config.end() ? std::get_if<std::string>(&reason->second) : nullptr;
          log_ << tag() << "the server refused a message: " << (text ? *text : "no reason given") << std::endl;
          break;
        }
        case MessageType::fit:  // a fit may overtake the welcome
          note_welcome();
          if (ranks_->size() > 1) command(RankCommand::fit, encode(*m));
          try {
            connection_->send(train_round(*m));
          } catch (const std::exception& e) {  // the server's round timeout covers the missing result
            log_ << tag() << "could not train round " << m->round << ": " << e.what() << std::endl;
            if (ranks_->size() > 1 && !dynamic_cast<const RoundNotStarted*>(&e)) throw;
          }
          break;
        case MessageType::shutdown:
          log_ << tag() << "the server ended the run" << std::endl;
          if (ranks_->size() > 1) command(RankCommand::stop);
          return 0;
        default:
          log_ << tag() << "ignored a " << message_type_name(m->type) << " message" << std::endl;
      }
    }
    if (ranks_->size() > 1) command(RankCommand::stop);
    connection_->send(status_message(MessageType::shutdown));
    return 1;
  }

  // A setting the server pushed with the round, or the participant's own value.
  template <class T>
  static T pushed(const Message& fit, const char* key, T own) {
    const auto it = fit.config.find(key);
    if (it == fit.config.end()) return own;
    if (const T* value = std::get_if<T>(&it->second)) return *value;
    throw ProtocolError(std::string("round setting \"") + key + "\" has the wrong type");
  }

  // What this round trains on: `steps` batches where the run continues (data placed by the
  // round number, so a repeated round sees the same data), or one pass over the round's slice
  // when the server assigns a share ("examples", fed/partition.h).
  struct RoundData {
    BatchIterator* batches;
    int64_t steps;
    int64_t micro_batches;  // in all: the last step may take fewer than grad_accum_steps
  };
  // A round every rank refused before its first collective: the participant goes on with the next.
  // Any other failure with several ranks ends the participant: ranks that failed mid-round and
  // ranks still inside a collective could never meet again.
  struct RoundNotStarted : Error {
    using Error::Error;
  };

  Message train_round(Message& fit) {
    const auto start = Clock::now();
    std::optional<Trainer> trainer;
    std::optional<RoundData> data;
    NamedTensors global;
    std::string refusal;
    try {
      data = prepare_round(fit, trainer, global);
    } catch (const std::exception& e) {
      refusal = e.what();
    }
    if (ranks_->all_reduce_sum(refusal.empty() ? 0.0 : 1.0) > 0)
      throw RoundNotStarted(refusal.empty() ? "another rank could not start the round" : refusal);
    return run_round(fit, *trainer, *data, global, start);
  }

  RoundData prepare_round(Message& fit, std::optional<Trainer>& trainer, NamedTensors& global) {
    check_tensors(fit, adapter_specs(adapter_));
    load_adapter_tensors(adapter_, fit.tensors);
    global = clone_tensors(adapter_.named_tensors());
    trained_ = adapter_.device() == model_.device() ? adapter_ : adapter_.to_device(model_.device());
    OptimizerOptions optimizer = me_.train.optimizer;
    optimizer.lr = pushed<double>(fit, "lr", optimizer.lr);
    // DP-SGD noise independent across participants and rounds (a fresh trainer each round).
    optimizer.dp_sgd.seed = derive_seed(me_.train.seed, hash_name(me_.name), static_cast<uint64_t>(fit.round));
    RoundData data = round_data(fit);
    optimizer.total_steps = data.steps;
    trainer.emplace(model_, trained_, optimizer, ranks_.get());
    if (const double mu = pushed<double>(fit, "proximal_mu", 0.0); mu > 0) {
      std::vector<Tensor> anchor;
      for (const auto& [name, t] : global) anchor.push_back(t.device() == model_.device() ? t : t.to_device(model_.device()));
      trainer->set_proximal_term(mu, std::move(anchor));
    }
    if (pushed<double>(fit, "clip_norm", 0.0) < 0) throw ProtocolError("round setting \"clip_norm\" is negative");
    return data;
  }

  Message run_round(const Message& fit, Trainer& trainer, RoundData& data, const NamedTensors& global,
                    Clock::time_point start) {
    double loss_sum = 0;
    int64_t examples = 0, drawn = 0, tokens = 0;
    training_ = true;
    struct TrainingDone {  // also when a step throws
      std::atomic<bool>& flag;
      ~TrainingDone() { flag = false; }
    } training_done{training_};
    steps_done_ = 0;
    for (int64_t step = 1; step <= data.steps; ++step) {
      std::vector<Batch> shares;  // this rank's rows of each global micro-batch
      for (int64_t i = 0; i < me_.train.grad_accum_steps && drawn < data.micro_batches; ++i, ++drawn) {
        const Batch global = data.batches->next();
        examples += global.input_ids.shape()[0];
        tokens += global.input_ids.numel();
        shares.push_back(rank_share(global, ranks_->rank(), ranks_->size()));
      }
      last_loss_ = trainer.step(shares).loss;
      share_gpus();
      loss_sum += last_loss_;
      steps_done_ = step;
      tokens_per_s_ = static_cast<double>(tokens) / std::max(1e-9, std::chrono::duration<double>(Clock::now() - start).count());
    }
    training_ = false;
    copy_trained_adapter_back();
    Message result = status_message(MessageType::fit_result);
    result.round = fit.round;
    result.num_examples = examples;
    result.metrics["train_loss"] = loss_sum / static_cast<double>(data.steps);
    if (const double clip = pushed<double>(fit, "clip_norm", 0.0); clip > 0)
      result.metrics["clipped_bit"] = clip_own_update(global, clip);
    if (ranks_->rank() == 0)  // the rank that reports keeps the ledger
      if (const double epsilon = dp_sgd_epsilon(fit, data.steps); std::isfinite(epsilon)) result.metrics["dp_sgd_epsilon"] = epsilon;
    result.metrics["seconds"] = std::chrono::duration<double>(Clock::now() - start).count();
    result.tensors = to_wire(adapter_.named_tensors());
    log_ << tag() << "round " << fit.round << ": " << data.steps << " steps on " << examples
         << " examples, train loss " << result.metrics["train_loss"] << std::endl;
    return result;
  }

  // What the model leaves free where it computes: RAM on the CPU; on the GPU, the free memory of
  // the GPUs this node's ranks train on (NVML; RAM where NVML reports none): those its nodes list
  // (CUDA_VISIBLE_DEVICES), or the first one for a participant that lists none.
  double free_memory() {
    const ResourceSample sample = resources_.sample();
    if (model_.device() == Device::cpu || sample.gpus.empty()) return sample.ram_available_bytes;
    const size_t used = me_.uses_gpus() ? sample.gpus.size() : 1;
    double free = 0;
    for (size_t g = 0; g < used; ++g) free += sample.gpus[g].memory_free_bytes;
    return free;
  }

  // The GPU trainer's adapter into adapter_, which the wire and the client-side clipping read.
  void copy_trained_adapter_back() {
    if (trained_.device() == adapter_.device()) return;  // the same tensors
    const NamedTensors trained = trained_.named_tensors(), host = adapter_.named_tensors();
    for (size_t i = 0; i < host.size(); ++i) kernels::copy(host[i].second, trained[i].second);
  }

  // DP-SGD's ε spent by this participant in the run so far (+∞ without DP-SGD noise): each step
  // samples one global batch from its data. Rounds trained before a restart count too (the ledger).
  double dp_sgd_epsilon(const Message& fit, int64_t steps) {
    const DpSgdOptions& dp = me_.train.optimizer.dp_sgd;
    if (!dp.enabled() || dp.noise_multiplier <= 0) return INFINITY;
    const double batch = static_cast<double>(global_micro_batch() * me_.train.grad_accum_steps);
    return dp_sgd_ledger_.add(pushed<std::string>(fit, "run_id", ""), std::min(1.0, batch / static_cast<double>(run_.train.size())),
                              dp.noise_multiplier, steps, me_.train.dp_sgd_delta);
  }

  static NamedTensors clone_tensors(const NamedTensors& tensors) {
    NamedTensors copies;
    for (const auto& [name, t] : tensors) copies.emplace_back(name, t.clone());
    return copies;
  }

  // Client-side DP: the update leaves clipped to C; returns bᵢ = [‖update‖ ≤ C] for adaptive C.
  double clip_own_update(const NamedTensors& global, double clip) {
    const NamedTensors trained = adapter_.named_tensors();
    NamedTensors update = clone_tensors(trained);
    for (size_t i = 0; i < update.size(); ++i) kernels::axpy(update[i].second, global[i].second, -1.0);
    const double norm = clip_to_norm(update, clip);
    for (size_t i = 0; i < update.size(); ++i) {
      kernels::convert(trained[i].second, global[i].second);
      kernels::axpy(trained[i].second, update[i].second, 1.0);
    }
    return norm <= clip ? 1.0 : 0.0;
  }

  RoundData round_data(const Message& fit) {
    if (const int64_t count = pushed<int64_t>(fit, "examples", 0); count > 0) {
      slice_.clear();
      for (int64_t index : round_slice(static_cast<int64_t>(run_.train.size()), count, fit.round, me_.train.seed))
        slice_.push_back(run_.train[index]);
      slice_batches_.emplace(slice_, global_micro_batch(), me_.train.seed + static_cast<uint64_t>(fit.round),
                             me_.train.bucket_by_length, run_.pad_id());
      const int64_t micro_batches = slice_batches_->batches_per_epoch();  // one pass, nothing twice
      return {&*slice_batches_, (micro_batches + me_.train.grad_accum_steps - 1) / me_.train.grad_accum_steps,
              micro_batches};
    }
    const int64_t steps = pushed<int64_t>(fit, "steps", me_.train.steps);
    const int64_t index = (fit.round - 1) * steps * me_.train.grad_accum_steps;
    batches_.seek(index / batches_.batches_per_epoch(), index % batches_.batches_per_epoch());
    return {&batches_, steps, steps * me_.train.grad_accum_steps};
  }

  const ParticipantConfig& me_;
  std::ostream& log_;
  std::unique_ptr<Communicator> ranks_;
  int local_rank_;
  LoadedRun run_;
  LlamaModel model_;
  LoraAdapter adapter_;   // on the host: what the server sends and receives
  LoraAdapter trained_;   // what the trainer updates: adapter_ itself, or its copy in GPU memory
  BatchIterator batches_;
  std::vector<Example> slice_;                   // this round's share, with a partition strategy
  std::optional<BatchIterator> slice_batches_;
  std::optional<Connection> connection_;  // rank 0 only
  ResourceSampler resources_;             // the heartbeat thread's
  ResourceSampler rank_resources_;        // the training thread's: this rank's GPU
  std::mutex rank_gpus_mutex_;
  std::vector<double> rank_gpus_;         // on rank 0: every rank's GPU slot (share_gpus)
  DpSgdLedger dp_sgd_ledger_;             // rank 0's, in OUTPUT/participants/NAME/
  Clock::time_point last_command_ = Clock::now();
  double heartbeat_s_;
  bool welcomed_ = false;
  double free_memory_ = free_memory();    // reported at join, for the partition strategies
  std::atomic<double> last_loss_ = 0;
  std::atomic<bool> training_ = false;
  std::atomic<int64_t> steps_done_ = 0;
  std::atomic<double> tokens_per_s_ = 0;
};

}  // namespace

int run_client(const FederationConfig& config, const std::string& name, const std::string& endpoint, std::ostream& log,
               const std::atomic<bool>* stop, const RankInfo& rank) {
  const ParticipantConfig& me = config.participant(name);
  require_shared_adapter(config, me);
  if (rank.world_size != me.world_size())
    throw Error(config.path + ": participant " + name + " has " + std::to_string(me.world_size()) +
                " ranks over its nodes, but this process was started as rank " + std::to_string(rank.rank) + " of " +
                std::to_string(rank.world_size) + " (WORLD_SIZE)");
  // GPU ranks sum their gradients in GPU memory with NCCL, CPU ranks with Gloo.
  const CommBackend backend = me.train.device == Device::cuda ? CommBackend::nccl : CommBackend::gloo;
  std::unique_ptr<Communicator> ranks = connect_ranks(backend, rank, kRankTimeout);
  Participant participant(config, me, endpoint, std::move(ranks), rank.local_rank, log);
  return participant.run(stop);
}

int run_participant_node(const FederationConfig& config, const std::string& name, size_t node, const std::string& endpoint,
                         const std::string& self_executable, std::ostream& log, const std::atomic<bool>* stop) {
  const ParticipantConfig& me = config.participant(name);
  if (node >= me.nodes.size())
    throw Error(config.path + ": participant " + name + " has " + std::to_string(me.nodes.size()) + " node(s); there is no node " +
                std::to_string(node));
  if (me.world_size() == 1) return run_client(config, name, endpoint, log, stop);
  const std::vector<std::pair<std::string, std::string>> node_env = node_environment(me, node);
  Children ranks;
  for (int local = 0; local < me.nodes[node].ranks; ++local) {
    ProcessSpec spec{.args = {self_executable, "client", config.path, "--name", name}, .env = node_env, .end_with_parent = true};
    if (!endpoint.empty()) spec.args.insert(spec.args.end(), {"--server", endpoint});
    spec.env.emplace_back("RANK", std::to_string(me.first_rank(node) + local));
    spec.env.emplace_back("LOCAL_RANK", std::to_string(local));
    ranks.add(spawn_process(spec), "rank " + std::to_string(me.first_rank(node) + local));
  }
  log << "[" << name << "] node " << node << " (" << me.nodes[node].host << ") started ranks " << me.first_rank(node) << ".."
      << me.first_rank(node) + me.nodes[node].ranks - 1 << " of " << me.world_size() << std::endl;
  // Every rank must live: a rank that fails leaves the others waiting in a collective.
  int status = 0;
  while (!ranks.empty() && !(stop && *stop)) {
    for (const Children::Exit& exit : ranks.reap())
      if (exit.failed) {
        log << "[" << name << "] " << exit.name << " stopped (" << exit.how << "); stopping the node's other ranks" << std::endl;
        status = 1;
        ranks.terminate_all();
      }
    std::this_thread::sleep_for(milliseconds(100));
  }
  ranks.stop_all(std::chrono::seconds(stop && *stop ? 0 : 10));
  return status != 0 || (stop && *stop) ? 1 : 0;
}

}  // namespace fe::fed
