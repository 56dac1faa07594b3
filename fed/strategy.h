// fed/strategy.h — the server's choices each round (Flower-style: configure a round — which
// participants, with which settings — and aggregate its results).
//
// Sampling: each round takes max(min_clients, ⌈fraction·n⌉) of the n alive participants (all of
// them when fewer), drawn from Rng(seed, "sample", round) alone, so a resumed run samples as the
// uninterrupted one would.
//
// All strategies see the same inputs: the current global parameters and, per participant, its
// trained parameters and example count. With x = current global and
// x̄ = Σ nᵢ·xᵢ / Σ nᵢ (the example-weighted mean of the results):
//   fedavg      x ← x̄
//   fedprox     x ← x̄; participants add (mu/2)·‖w − x‖² to their local loss (fit_config
//               pushes "proximal_mu")
//   fedadagrad, fedadam, fedyogi (Reddi et al. 2021, "Adaptive Federated Optimization"):
//               Δ = x̄ − x (pseudo-gradient)
//               m ← β₁·m + (1 − β₁)·Δ
//               v ← v + Δ²                               (adagrad)
//               v ← β₂·v + (1 − β₂)·Δ²                   (adam)
//               v ← v − (1 − β₂)·Δ²·sign(v − Δ²)         (yogi)
//               x ← x + η·m̂ / (√v̂ + τ), with m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ) when
//               bias_correction is on (adam and yogi only; t = rounds aggregated), else m, v.
//               m starts at 0 and v at initial_accumulator (default τ², as in the paper).
// Every parameter comes from the config. Aggregation runs on the CPU (f32 tensors, f64
// accumulation). Differential privacy wraps a strategy (DpStrategy, fed/privacy.h).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/safetensors.h"
#include "fed/protocol.h"

namespace fe::fed {

struct ParticipantSampling {
  double fraction = 1.0;    // server.fraction
  int64_t min_clients = 1;  // server.min_clients
  uint64_t seed = 0;        // the run's seed
};

struct StrategyOptions {
  std::string name = "fedavg";  // fedavg | fedprox | fedadagrad | fedadam | fedyogi
  double proximal_mu = 0.01;    // fedprox
  double eta = 1e-2;            // server learning rate (fedopt family)
  double beta1 = 0.9;
  double beta2 = 0.99;
  double tau = 1e-3;                // adaptivity / numerical floor
  double initial_accumulator = -1;  // v₀; negative: τ²
  bool bias_correction = false;
  ParticipantSampling sampling;
};

struct ClientResult {
  std::string client_id;
  NamedTensors params;  // same names, order and shapes as the global parameters
  int64_t num_examples = 0;
  std::map<std::string, double> metrics;  // as the participant reported them (e.g. clipped_bit)
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  const std::string& name() const { return name_; }
  // This round's participants, from those alive now (in name order); returned in name order.
  virtual std::vector<std::string> sample(int64_t round, std::vector<std::string> available);
  // How many participants a round samples out of `available`.
  size_t sample_size(size_t available) const;
  const ParticipantSampling& sampling() const { return sampling_; }
  // Settings pushed to participants with each round's fit message (e.g. proximal_mu).
  virtual std::map<std::string, ConfigValue> fit_config(int64_t round) const;
  // The new global parameters. results is non-empty; a result whose names or shapes differ from
  // `global` is an Error naming the client and the tensor. num_examples must be positive.
  virtual NamedTensors aggregate(int64_t round, const NamedTensors& global,
                                 const std::vector<ClientResult>& results) = 0;
  // Optimizer state (moments, step count) for checkpoints; empty for stateless strategies and
  // before the first aggregate. load_state(state()) on a fresh strategy continues bit-identically.
  virtual NamedTensors state() const { return {}; }
  virtual void load_state(const NamedTensors& state) { (void)state; }

 protected:
  Strategy(std::string name, ParticipantSampling sampling) : name_(std::move(name)), sampling_(sampling) {}

 private:
  std::string name_;
  ParticipantSampling sampling_;
};

// Throws Error for an unknown name or an invalid parameter (e.g. beta outside [0, 1)).
std::unique_ptr<Strategy> make_strategy(const StrategyOptions& options);

// A result whose tensors differ from `global` in names, order or shape, or are not CPU f32/f64,
// is an Error that starts with `where` and names the client and the tensor. The one check of a
// result's tensors: whatever first computes with the results (a strategy, or the DP wrapper) runs
// it.
void check_result_tensors(const char* where, const NamedTensors& global, const ClientResult& result);

// x̄ = Σ nᵢ·xᵢ / Σ nᵢ, accumulated in double; the building block of every strategy.
NamedTensors weighted_mean(const NamedTensors& global, const std::vector<ClientResult>& results);

}  // namespace fe::fed
