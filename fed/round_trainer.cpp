#include "fed/round_trainer.h"

#include <cmath>
#include <ostream>

#include "fed/adapter_wire.h"
#include "fed/partition.h"
#include "fed/privacy.h"
#include "kernels/elementwise.h"

namespace fe::fed {
namespace {

using Clock = RoundTrainer::Clock;

// A setting the server pushed with the round, or the participant's own value.
template <class T>
T pushed(const Message& fit, const char* key, T own) {
  const auto it = fit.config.find(key);
  if (it == fit.config.end()) return own;
  if (const T* value = std::get_if<T>(&it->second)) return *value;
  throw ProtocolError(std::string("round setting \"") + key + "\" has the wrong type");
}

NamedTensors clone_tensors(const NamedTensors& tensors) {
  NamedTensors copies;
  for (const auto& [name, t] : tensors) copies.emplace_back(name, t.clone());
  return copies;
}

}  // namespace

RoundTrainer::RoundTrainer(const FederationConfig& config, const ParticipantConfig& me, Communicator& ranks,
                           int local_rank, std::ostream& log)
    : me_(me), ranks_(ranks), local_rank_(local_rank), log_(log) {
  run_ = load_run(me.train, true);
  model_.emplace(run_.weights, ModelOptions{.recompute_activations = me.train.recompute_activations});
  adapter_ = LoraAdapter::init(run_.weights.config, config.shared.lora, 0, DType::f32);
  batches_.emplace(run_.train, global_micro_batch(), me.train.seed, me.train.bucket_by_length, run_.pad_id());
  dp_sgd_ledger_.emplace(participant_dir(config, me) / "dp_sgd_ledger.json");
  free_memory_ = free_memory();
}

int64_t RoundTrainer::global_micro_batch() const { return me_.train.micro_batch_size * ranks_.size(); }

std::string RoundTrainer::tag() const {
  return "[" + me_.name + (ranks_.rank() ? " rank " + std::to_string(ranks_.rank()) : std::string()) + "] ";
}

Message RoundTrainer::status_message(MessageType type) const {
  Message m{.type = type, .client_id = me_.name};
  m.metrics["num_examples"] = static_cast<double>(run_.train.size());
  m.metrics["free_memory_bytes"] = free_memory_;
  m.metrics["ranks"] = ranks_.size();
  m.metrics["step"] = static_cast<double>(steps_done_);  // in the current or last round
  m.metrics["loss"] = last_loss_;
  m.metrics["training"] = training_ ? 1 : 0;
  m.metrics["tokens_per_second"] = tokens_per_s_;
  return m;
}

void RoundTrainer::add_rank_gpu_figures(std::map<std::string, double>& figures) {
  std::lock_guard lock(rank_gpus_mutex_);
  if (!rank_gpus_.empty()) set_rank_gpu_figures(rank_gpus_, figures);
}

void RoundTrainer::share_gpus() {
  if (ranks_.size() == 1) return;
  std::vector<double> slots(kGpuSlotSize * ranks_.size(), 0.0);
  pack_rank_gpu(resources_.sample(), local_rank_, std::span(slots).subspan(kGpuSlotSize * ranks_.rank(), kGpuSlotSize));
  ranks_.all_reduce_sum(View{slots.data(), DType::f64, {static_cast<int64_t>(slots.size())}, Device::cpu});
  if (ranks_.rank() != 0) return;
  std::lock_guard lock(rank_gpus_mutex_);
  rank_gpus_ = std::move(slots);
}

void RoundTrainer::command(RankCommand what, std::string payload) {
  std::string message = static_cast<char>(what) + payload;
  ranks_.broadcast(message, 0);
  last_command_ = Clock::now();
}

int RoundTrainer::follow(const std::atomic<bool>* stop) {
  for (;;) {
    if (stop && *stop) return 1;
    std::string message;
    ranks_.broadcast(message, 0);
    if (message.empty()) throw Error("rank " + std::to_string(ranks_.rank()) + ": an empty command from rank 0");
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
      case RankCommand::stop:
        return 0;
      default:
        throw Error("rank " + std::to_string(ranks_.rank()) + ": an unknown command from rank 0");
    }
  }
}

Message RoundTrainer::train_round(Message& fit) {
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
  if (ranks_.all_reduce_sum(refusal.empty() ? 0.0 : 1.0) > 0)
    throw RoundNotStarted(refusal.empty() ? "another rank could not start the round" : refusal);
  return run_round(fit, *trainer, *data, global, start);
}

RoundTrainer::RoundData RoundTrainer::prepare_round(Message& fit, std::optional<Trainer>& trainer,
                                                    NamedTensors& global) {
  check_tensors(fit, adapter_specs(adapter_));
  load_adapter_tensors(adapter_, fit.tensors);
  global = clone_tensors(adapter_.named_tensors());
  trained_ = adapter_.device() == model_->device() ? adapter_ : adapter_.to_device(model_->device());
  OptimizerOptions optimizer = me_.train.optimizer;
  optimizer.lr = pushed<double>(fit, "lr", optimizer.lr);
  // DP-SGD noise independent across participants and rounds (a fresh trainer each round).
  optimizer.dp_sgd.seed = derive_seed(me_.train.seed, hash_name(me_.name), static_cast<uint64_t>(fit.round));
  RoundData data = round_data(fit);
  optimizer.total_steps = data.steps;
  trainer.emplace(*model_, trained_, optimizer, &ranks_);
  if (const double mu = pushed<double>(fit, "proximal_mu", 0.0); mu > 0) {
    std::vector<Tensor> anchor;
    for (const auto& [name, t] : global)
      anchor.push_back(t.device() == model_->device() ? t : t.to_device(model_->device()));
    trainer->set_proximal_term(mu, std::move(anchor));
  }
  if (pushed<double>(fit, "clip_norm", 0.0) < 0) throw ProtocolError("round setting \"clip_norm\" is negative");
  return data;
}

Message RoundTrainer::run_round(const Message& fit, Trainer& trainer, RoundData& data, const NamedTensors& global,
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
      const Batch global_batch = data.batches->next();
      examples += global_batch.input_ids.shape()[0];
      tokens += global_batch.input_ids.numel();
      shares.push_back(rank_share(global_batch, ranks_.rank(), ranks_.size()));
    }
    last_loss_ = trainer.step(shares).loss;
    share_gpus();
    loss_sum += last_loss_;
    steps_done_ = step;
    tokens_per_s_ =
        static_cast<double>(tokens) / std::max(1e-9, std::chrono::duration<double>(Clock::now() - start).count());
  }
  training_ = false;
  copy_trained_adapter_back();
  Message result = status_message(MessageType::fit_result);
  result.round = fit.round;
  result.num_examples = examples;
  result.metrics["train_loss"] = loss_sum / static_cast<double>(data.steps);
  if (const double clip = pushed<double>(fit, "clip_norm", 0.0); clip > 0)
    result.metrics["clipped_bit"] = clip_own_update(global, clip);
  if (ranks_.rank() == 0)  // the rank that reports keeps the ledger
    if (const double epsilon = dp_sgd_epsilon(fit, data.steps); std::isfinite(epsilon))
      result.metrics["dp_sgd_epsilon"] = epsilon;
  result.metrics["seconds"] = std::chrono::duration<double>(Clock::now() - start).count();
  result.tensors = to_wire(adapter_.named_tensors());
  log_ << tag() << "round " << fit.round << ": " << data.steps << " steps on " << examples << " examples, train loss "
       << result.metrics["train_loss"] << std::endl;
  return result;
}

// What the model leaves free where it computes: RAM on the CPU; on the GPU, the free memory of
// the GPUs this node's ranks train on (NVML; RAM where NVML reports none): those its nodes list
// (CUDA_VISIBLE_DEVICES), or the first one for a participant that lists none.
double RoundTrainer::free_memory() {
  const ResourceSample sample = resources_.sample();
  if (model_->device() == Device::cpu || sample.gpus.empty()) return sample.ram_available_bytes;
  const size_t used = me_.uses_gpus() ? sample.gpus.size() : 1;
  double free = 0;
  for (size_t g = 0; g < used; ++g) free += sample.gpus[g].memory_free_bytes;
  return free;
}

// The GPU trainer's adapter into adapter_, which the wire and the client-side clipping read.
void RoundTrainer::copy_trained_adapter_back() {
  if (trained_.device() == adapter_.device()) return;  // the same tensors
  const NamedTensors trained = trained_.named_tensors(), host = adapter_.named_tensors();
  for (size_t i = 0; i < host.size(); ++i) kernels::copy(host[i].second, trained[i].second);
}

// DP-SGD's ε spent by this participant in the run so far (+∞ without DP-SGD noise): each step
// samples one global batch from its data. Rounds trained before a restart count too (the ledger).
double RoundTrainer::dp_sgd_epsilon(const Message& fit, int64_t steps) {
  const DpSgdOptions& dp = me_.train.optimizer.dp_sgd;
  if (!dp.enabled() || dp.noise_multiplier <= 0) return INFINITY;
  const double batch = static_cast<double>(global_micro_batch() * me_.train.grad_accum_steps);
  return dp_sgd_ledger_->add(pushed<std::string>(fit, "run_id", ""),
                             std::min(1.0, batch / static_cast<double>(run_.train.size())), dp.noise_multiplier, steps,
                             me_.train.dp_sgd_delta);
}

// Client-side DP: the update leaves clipped to C; returns bᵢ = [‖update‖ ≤ C] for adaptive C.
double RoundTrainer::clip_own_update(const NamedTensors& global, double clip) {
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

// `steps` batches where the run continues (data placed by the round number, so a repeated round
// sees the same data), or one pass over the round's slice when the server assigns a share
// ("examples", fed/partition.h).
RoundTrainer::RoundData RoundTrainer::round_data(const Message& fit) {
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
  batches_->seek(index / batches_->batches_per_epoch(), index % batches_->batches_per_epoch());
  return {&*batches_, steps, steps * me_.train.grad_accum_steps};
}

}  // namespace fe::fed
