// fed/round_trainer.h — the work of one rank of a participant in a round: the model, the adapter
// and the data it trains on, the local training loop, client-side DP clipping, the DP-SGD ledger,
// and the commands that keep a participant's ranks in lockstep. The connection to the server and
// the heartbeats are fed/client.cpp's.
//
// A round trains from the global adapter in the fit message with a fresh optimizer, for `steps`
// steps on data placed by the round number (or one pass over the round's slice when the server
// assigns "examples"), with the proximal term when "proximal_mu" is pushed; with "clip_norm" the
// update leaves clipped to it and the result reports clipped_bit.
//
// Ranks: rank 0 passes each command (fit message, idle tick, stop) on with command(); the other
// ranks follow() them, so every rank enters the same collectives in the same order.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/communicator.h"
#include "engine/train_run.h"
#include "fed/dp_sgd_ledger.h"
#include "fed/federation_config.h"
#include "fed/protocol.h"
#include "fed/resources.h"

namespace fe::fed {

// What rank 0 tells the other ranks of its participant, as the first byte of a broadcast.
enum class RankCommand : char { idle = 'i', fit = 'f', stop = 's' };

// A round every rank refused before its first collective: the participant goes on with the next.
// Any other failure with several ranks ends the participant: ranks that failed mid-round and
// ranks still inside a collective could never meet again.
struct RoundNotStarted : Error {
  using Error::Error;
};

class RoundTrainer {
 public:
  using Clock = std::chrono::steady_clock;
  // Loads the participant's model and training data (me.train). `ranks` and `log` must outlive it.
  RoundTrainer(const FederationConfig& config, const ParticipantConfig& me, Communicator& ranks, int local_rank,
               std::ostream& log);

  // Trains round fit.round on every rank together and returns the fit_result (rank 0 sends it).
  // RoundNotStarted when a rank could not start it (a bad fit message, no data).
  Message train_round(Message& fit);

  // Rank 0: passes a command on to the other ranks.
  void command(RankCommand what, std::string payload = "");
  Clock::time_point last_command() const { return last_command_; }
  // Ranks other than 0: train the rounds rank 0 passes on, until it says stop (0) or *stop is set
  // (1; rank 0 then fails at its next command and the node ends).
  int follow(const std::atomic<bool>* stop);
  // Every rank's GPU to rank 0, for its heartbeats (fed/resources.h). All ranks call it at the same
  // points: after each training step and each idle command.
  void share_gpus();

  // A message of `type` carrying the participant's status figures: num_examples and
  // free_memory_bytes (its volume), ranks, and the progress of the current or last round (step,
  // loss, training, tokens_per_second). Thread-safe, as is add_rank_gpu_figures.
  Message status_message(MessageType type) const;
  void add_rank_gpu_figures(std::map<std::string, double>& figures);
  std::string tag() const;  // "[name] " or "[name rank r] ", for log lines

 private:
  // What this round trains on: `steps` batches where the run continues, or one pass over the
  // round's slice.
  struct RoundData {
    BatchIterator* batches;
    int64_t steps;
    int64_t micro_batches;  // in all: the last step may take fewer than grad_accum_steps
  };

  int64_t global_micro_batch() const;  // rows of one micro-batch over all ranks
  RoundData prepare_round(Message& fit, std::optional<Trainer>& trainer, NamedTensors& global);
  Message run_round(const Message& fit, Trainer& trainer, RoundData& data, const NamedTensors& global,
                    Clock::time_point start);
  RoundData round_data(const Message& fit);
  double free_memory();
  void copy_trained_adapter_back();
  double dp_sgd_epsilon(const Message& fit, int64_t steps);
  double clip_own_update(const NamedTensors& global, double clip);

  const ParticipantConfig& me_;
  Communicator& ranks_;
  const int local_rank_;
  std::ostream& log_;
  LoadedRun run_;
  std::optional<LlamaModel> model_;
  LoraAdapter adapter_;  // on the host: what the server sends and receives
  LoraAdapter trained_;  // what the trainer updates: adapter_ itself, or its copy in GPU memory
  std::optional<BatchIterator> batches_;
  std::vector<Example> slice_;  // this round's share, with a partition strategy
  std::optional<BatchIterator> slice_batches_;
  std::optional<DpSgdLedger> dp_sgd_ledger_;  // rank 0's, in OUTPUT/participants/NAME/
  ResourceSampler resources_;                 // this rank's GPU, and the free memory at start
  std::mutex rank_gpus_mutex_;
  std::vector<double> rank_gpus_;  // on rank 0: every rank's GPU slot (share_gpus)
  Clock::time_point last_command_ = Clock::now();
  double free_memory_ = 0;  // at start, reported with every status: the partition strategies use it
  std::atomic<double> last_loss_ = 0;
  std::atomic<bool> training_ = false;
  std::atomic<int64_t> steps_done_ = 0;
  std::atomic<double> tokens_per_s_ = 0;
};

}  // namespace fe::fed
