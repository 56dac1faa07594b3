// fed/privacy.h — user-level differential privacy on model updates (DP-FedAvg style).
//
// An update is Δᵢ = (participant i's adapter) − (global adapter), all tensors together. Clipping
// scales Δᵢ by min(1, C/‖Δᵢ‖₂). The mean of the m clipped updates of a round gets Gaussian noise
// N(0, (z·C/m)²) per element, and the noisy mean is what the server strategy sees (FedAdam etc.
// get a noisy pseudo-gradient). Modes:
//   server_fixed     the server clips each received update to C
//   server_adaptive  as server_fixed, and C follows Andrew et al. 2021 ("Differentially Private
//                    Learning with Adaptive Clipping"): bᵢ = [‖Δᵢ‖ ≤ C];
//                    b̃ = (Σbᵢ + N(0, σ_b²))/m; C ← C·exp(−η_C·(b̃ − γ)); the update noise uses
//                    z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2) so that the pair (update, count) spends the
//                    budget of one Gaussian mechanism with multiplier z (their Theorem 1)
//   client_fixed     participants clip their own update to C before sending; the server adds noise
//   client_adaptive  participants clip with the C they are sent and report bᵢ; the server updates C
//
// DpStrategy applies a mode around any strategy (as Flower's DifferentialPrivacy*Clipping
// wrappers do): the wrapped strategy aggregates one result, the noisy mean update applied to the
// global parameters, and the wrapper keeps the privacy accountant.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/accountant.h"
#include "engine/rng.h"
#include "fed/strategy.h"

namespace fe::fed {

enum class DpMode { off, server_fixed, server_adaptive, client_fixed, client_adaptive };
DpMode parse_dp_mode(const std::string& name);  // Error listing the valid names
const char* dp_mode_name(DpMode mode);

struct DpOptions {
  DpMode mode = DpMode::off;
  double noise_multiplier = 1.0;     // z
  double clip_norm = 1.0;            // C (the starting value when adaptive)
  double target_quantile = 0.5;      // γ (adaptive)
  double clip_learning_rate = 0.2;   // η_C (adaptive)
  double clipped_count_stddev = -1;  // σ_b (adaptive); negative: m/20, the paper's choice
  double delta = 1e-5;               // for the reported ε
  double target_epsilon = 0;         // > 0: stop the run before a round would exceed it
  uint64_t seed = 0;
};

// ‖x‖₂ over every element of every tensor, accumulated in double.
double global_l2_norm(const NamedTensors& tensors);
// Scales every tensor by min(1, clip/‖x‖₂) in place; returns ‖x‖₂ before clipping.
double clip_to_norm(const NamedTensors& tensors, double clip);
// Adds N(0, stddev²) to every element.
void add_gaussian_noise(const NamedTensors& tensors, double stddev, Rng& rng);

// The server's side of DP for one run: turns a round's results into the noisy mean update and
// keeps the adaptive clip norm.
class DpAggregator {
 public:
  explicit DpAggregator(const DpOptions& options);
  const DpOptions& options() const { return options_; }
  double clip_norm() const { return clip_norm_; }  // the C of the coming round
  // The noise multiplier applied to the update mean (z, or z_Δ when adaptive).
  double update_noise_multiplier(int64_t sampled) const;
  // Returns global + noisy mean of the clipped updates (what the strategy aggregates, as a single
  // result), and updates C when adaptive. For client modes, `clipped_bits` holds each
  // participant's reported bᵢ (same order as results); for server modes it is ignored.
  NamedTensors privatize(int64_t round, const NamedTensors& global, const std::vector<ClientResult>& results,
                         const std::vector<double>& clipped_bits);
  // Checkpoint state: C, as the 1-element f64 tensor "dp.clip_norm". The noise needs no counter:
  // each round's draws are keyed by (options.seed, round), so a resumed run repeats them.
  NamedTensors state() const;
  void load_state(const NamedTensors& state);

 private:
  DpOptions options_;
  double clip_norm_;
};

// A strategy with user-level DP (mode ≠ off) around it. It samples as the wrapped strategy does,
// adds clip_norm to the round's settings in the client modes, privatizes the round's results
// (each result's metric "clipped_bit" is its bᵢ; 0 when absent) and accounts each round at
// sampling rate (participants sampled) / population. state()/load_state() are the wrapped
// strategy's, so its checkpoint file does not depend on DP; the mechanism's state and the
// accountant's rounds are checkpointed beside it (mechanism().state(), sampling_rates()).
class DpStrategy final : public Strategy {
 public:
  DpStrategy(std::unique_ptr<Strategy> inner, const DpOptions& options, size_t population);

  std::vector<std::string> sample(int64_t round, std::vector<std::string> available) override;
  std::map<std::string, ConfigValue> fit_config(int64_t round) const override;
  NamedTensors aggregate(int64_t round, const NamedTensors& global, const std::vector<ClientResult>& results) override;
  NamedTensors state() const override { return inner_->state(); }
  void load_state(const NamedTensors& state) override { inner_->load_state(state); }

  const DpAggregator& mechanism() const { return mechanism_; }
  const DpOptions& options() const { return mechanism_.options(); }
  // Restores C and the accountant from a checkpoint.
  void load_privacy_state(const NamedTensors& mechanism_state, const std::vector<double>& sampling_rates);
  const std::vector<double>& sampling_rates() const { return sampling_rates_; }
  // ε spent so far for options().delta; +∞ without noise.
  double epsilon_spent() const;
  // True when one more round at the expected sampling rate would spend more than target_epsilon.
  bool budget_exhausted() const;

 private:
  void account(double sampling_rate);

  std::unique_ptr<Strategy> inner_;
  DpAggregator mechanism_;
  size_t population_;
  size_t sampled_ = 0;  // by the latest sample()
  RdpAccountant accountant_;
  std::vector<double> sampling_rates_;  // one per aggregated round
};

}  // namespace fe::fed
