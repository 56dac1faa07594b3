#include "fed/client.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <mutex>
#include <ostream>
#include <thread>

#include "engine/train_run.h"
#include "kernels/elementwise.h"
#include "fed/adapter_wire.h"
#include "fed/partition.h"
#include "fed/privacy.h"
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

// Free memory to report at join time: available RAM on the CPU backend (/proc/meminfo).
double free_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  double kilobytes = 0;
  while (meminfo >> key >> kilobytes) {
    if (key == "MemAvailable:") return kilobytes * 1024;
    meminfo.ignore(64, '\n');
  }
  return 0;
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

class Participant {
 public:
  Participant(const FederationConfig& config, const ParticipantConfig& me, const std::string& endpoint, std::ostream& log)
      : me_(me), log_(log), run_(load_run(me.train, true)),
        model_(run_.weights, {.recompute_activations = me.train.recompute_activations}),
        adapter_(LoraAdapter::init(run_.weights.config, config.shared.lora, 0, DType::f32)),
        batches_(run_.train, me.train.micro_batch_size, me.train.seed, me.train.bucket_by_length, run_.tokenizer->pad_id()),
        connection_(config, me, endpoint), heartbeat_s_(config.server.heartbeat_s) {}

  int run(const std::atomic<bool>* stop) {
    std::atomic<bool> done = false;
    std::thread heartbeat([&] { send_heartbeats(done); });
    struct StopHeartbeats {  // also when serve() throws: a joinable thread must not be destroyed
      std::atomic<bool>& done;
      std::thread& thread;
      ~StopHeartbeats() {
        done = true;
        thread.join();
      }
    } stop_heartbeats{done, heartbeat};
    return serve(stop);
  }

 private:
  Message status_message(MessageType type) const {
    Message m{.type = type, .client_id = me_.name};
    m.metrics["num_examples"] = static_cast<double>(run_.train.size());
    m.metrics["free_memory_bytes"] = free_memory_;
    m.metrics["step"] = static_cast<double>(step_);
    m.metrics["loss"] = last_loss_;
    return m;
  }

  void send_heartbeats(const std::atomic<bool>& done) {
    auto next = Clock::now();
    while (!done) {
      if (Clock::now() >= next) {
        try {
          connection_.send(status_message(MessageType::heartbeat));
        } catch (const std::exception& e) {  // the server is unreachable for now; keep trying
          log_ << "[" << me_.name << "] heartbeat not sent: " << e.what() << std::endl;
        }
        next = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(heartbeat_s_));
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }

  int serve(const std::atomic<bool>* stop) {
    auto last_join = Clock::now() - std::chrono::hours(1);
    while (!(stop && *stop)) {
      if (!welcomed_ && Clock::now() - last_join > std::chrono::seconds(2)) {
        connection_.send(status_message(MessageType::join));
        last_join = Clock::now();
      }
      std::optional<Message> m = connection_.receive(milliseconds(200), log_);
      if (!m) continue;
      switch (m->type) {
        case MessageType::welcome:
          if (!welcomed_) log_ << "[" << me_.name << "] joined the federation" << std::endl;
          welcomed_ = true;
          break;
        case MessageType::reject: {
          const auto reason = m->config.find("reason");
          const std::string* text = reason != m->config.end() ? std::get_if<std::string>(&reason->second) : nullptr;
          log_ << "[" << me_.name << "] the server refused a message: " << (text ? *text : "no reason given") << std::endl;
          break;
        }
        case MessageType::fit:
          welcomed_ = true;
          try {
            connection_.send(train_round(*m));
          } catch (const std::exception& e) {  // the server's round timeout covers the missing result
            log_ << "[" << me_.name << "] could not train round " << m->round << ": " << e.what() << std::endl;
          }
          break;
        case MessageType::shutdown:
          log_ << "[" << me_.name << "] the server ended the run" << std::endl;
          return 0;
        default:
          log_ << "[" << me_.name << "] ignored a " << message_type_name(m->type) << " message" << std::endl;
      }
    }
    connection_.send(status_message(MessageType::shutdown));
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

  Message train_round(Message& fit) {
    const auto start = Clock::now();
    check_tensors(fit, adapter_specs(adapter_));
    load_adapter_tensors(adapter_, fit.tensors);
    const NamedTensors global = clone_tensors(adapter_.named_tensors());
    OptimizerOptions optimizer = me_.train.optimizer;
    optimizer.lr = pushed<double>(fit, "lr", optimizer.lr);
    // DP-SGD noise independent across participants and rounds (a fresh trainer each round).
    optimizer.dp_sgd.seed = derive_seed(me_.train.seed, hash_name(me_.name), static_cast<uint64_t>(fit.round));
    RoundData data = round_data(fit);
    optimizer.total_steps = data.steps;
    Trainer trainer(model_, adapter_, optimizer);
    if (const double mu = pushed<double>(fit, "proximal_mu", 0.0); mu > 0) {
      std::vector<Tensor> anchor;
      for (const auto& [name, t] : global) anchor.push_back(t);
      trainer.set_proximal_term(mu, std::move(anchor));
    }
    double loss_sum = 0;
    int64_t examples = 0;
    int64_t drawn = 0;
    for (step_ = 1; step_ <= data.steps; ++step_) {
      std::vector<Batch> micro_batches;
      for (int64_t i = 0; i < me_.train.grad_accum_steps && drawn < data.micro_batches; ++i, ++drawn) {
        micro_batches.push_back(data.batches->next());
        examples += micro_batches.back().input_ids.shape()[0];
      }
      last_loss_ = trainer.step(micro_batches).loss;
      loss_sum += last_loss_;
    }
    Message result = status_message(MessageType::fit_result);
    result.round = fit.round;
    result.num_examples = examples;
    result.metrics["train_loss"] = loss_sum / static_cast<double>(data.steps);
    if (const double clip = pushed<double>(fit, "clip_norm", 0.0); clip > 0)
      result.metrics["clipped_bit"] = clip_own_update(global, clip);
    result.metrics["seconds"] = std::chrono::duration<double>(Clock::now() - start).count();
    result.tensors = to_wire(adapter_.named_tensors());
    log_ << "[" << me_.name << "] round " << fit.round << ": " << data.steps << " steps on " << examples
         << " examples, train loss " << result.metrics["train_loss"] << std::endl;
    return result;
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

  // What this round trains on: `steps` batches where the run continues (data placed by the
  // round number, so a repeated round sees the same data), or one pass over the round's slice
  // when the server assigns a share ("examples", fed/partition.h).
  struct RoundData {
    BatchIterator* batches;
    int64_t steps;
    int64_t micro_batches;  // in all: the last step may take fewer than grad_accum_steps
  };
  RoundData round_data(const Message& fit) {
    if (const int64_t count = pushed<int64_t>(fit, "examples", 0); count > 0) {
      slice_.clear();
      for (int64_t index : round_slice(static_cast<int64_t>(run_.train.size()), count, fit.round, me_.train.seed))
        slice_.push_back(run_.train[index]);
      slice_batches_.emplace(slice_, me_.train.micro_batch_size, me_.train.seed + static_cast<uint64_t>(fit.round),
                             me_.train.bucket_by_length, run_.tokenizer->pad_id());
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
  LoadedRun run_;
  LlamaModel model_;
  LoraAdapter adapter_;
  BatchIterator batches_;
  std::vector<Example> slice_;                   // this round's share, with a partition strategy
  std::optional<BatchIterator> slice_batches_;
  Connection connection_;
  double heartbeat_s_;
  bool welcomed_ = false;
  double free_memory_ = free_memory_bytes();
  std::atomic<int64_t> step_ = 0;
  std::atomic<double> last_loss_ = 0;
};

}  // namespace

int run_client(const FederationConfig& config, const std::string& name, const std::string& endpoint, std::ostream& log,
               const std::atomic<bool>* stop) {
  const ParticipantConfig& me = config.participant(name);
  require_shared_adapter(config, me);
  Participant participant(config, me, endpoint, log);
  return participant.run(stop);
}

}  // namespace fe::fed
