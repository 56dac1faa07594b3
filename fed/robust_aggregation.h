// fed/robust_aggregation.h — aggregation rules that a minority of hostile participants cannot
// steer (Flower's FedMedian, FedTrimmedAvg and Krum), as a wrapper around any strategy.
//
// Every strategy starts from x̄, the example-weighted mean of the participants' parameters
// (fed/strategy.h). A robust rule replaces x̄ with x̂ and the wrapped strategy then applies x̂ as
// it would x̄ (FedAvg: x ← x̂; FedAdam etc.: pseudo-gradient Δ = x̂ − x). With n results
// x₁..xₙ (all tensors of a result together, f64):
//   median        x̂ = the coordinate-wise median (numpy's: the mean of the two middle values
//                 when n is even)
//   trimmed_mean  per coordinate, sort the n values, drop k = ⌊β·n⌋ from each end, average the
//                 n − 2k left (β = trim_fraction in [0, 0.5), so at least one value is left)
//   krum          Blanchard et al. 2017: score(i) = Σ ‖xᵢ − xⱼ‖² over the n − f − 2 results
//                 closest to xᵢ (at least 1; f = byzantine); multi-Krum (El Mhamdi et al. 2018)
//                 averages the `selected` results of lowest score (min(selected, n); 1 is Krum).
//                 Its guarantee needs n ≥ 2f + 3.
// The rules weigh every result alike: num_examples is what a participant says of itself, and a
// weight is exactly what a hostile one would inflate. Ties in Krum's scores go to the result
// that comes first (results arrive in participant-name order), so a run is reproducible.
// Differential privacy and a robust rule do not combine: DP's noise is calibrated to the mean
// of clipped updates that a robust rule replaces (the config refuses both).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fed/strategy.h"

namespace fe::fed {

enum class RobustRule { mean, median, trimmed_mean, krum };
RobustRule parse_robust_rule(const std::string& name);  // Error listing the valid names
const char* robust_rule_name(RobustRule rule);

struct RobustOptions {
  RobustRule rule = RobustRule::mean;  // mean: the strategy's own weighted mean
  double trim_fraction = 0.2;          // β, trimmed_mean (Flower's default)
  int64_t byzantine = 1;               // f, krum: hostile participants assumed
  int64_t selected = 1;                // m, krum: results averaged (1: Krum, more: multi-Krum)
};

// Error naming the option, its value and the rule it breaks.
void validate_robust_options(const RobustOptions& options);

// The rules themselves: one f64 tensor per global tensor (its shape). results is non-empty and
// each result's tensors match `global` (check_result_tensors).
std::vector<Tensor> coordinate_median(const NamedTensors& global, const std::vector<ClientResult>& results);
std::vector<Tensor> trimmed_mean(const NamedTensors& global, const std::vector<ClientResult>& results,
                                 double trim_fraction);
// Krum's choice: indices into results, lowest score first, min(selected, n) of them.
std::vector<size_t> krum_select(const NamedTensors& global, const std::vector<ClientResult>& results, int64_t byzantine,
                                int64_t selected);

// A strategy whose weighted mean is replaced by a robust rule (rule ≠ mean). It samples, pushes
// settings and keeps state as the wrapped strategy does; the wrapped strategy aggregates one
// result, x̂, so its optimizer state and checkpoints do not depend on the rule.
class RobustStrategy final : public Strategy {
 public:
  RobustStrategy(std::unique_ptr<Strategy> inner, const RobustOptions& options);

  std::vector<std::string> sample(int64_t round, std::vector<std::string> available) override {
    return inner_->sample(round, std::move(available));
  }
  std::map<std::string, ConfigValue> fit_config(int64_t round) const override { return inner_->fit_config(round); }
  NamedTensors aggregate(int64_t round, const NamedTensors& global, const std::vector<ClientResult>& results) override;
  NamedTensors state() const override { return inner_->state(); }
  void load_state(const NamedTensors& state) override { inner_->load_state(state); }

  const RobustOptions& options() const { return options_; }
  // The participants whose results Krum chose in the latest aggregate (empty for other rules).
  const std::vector<std::string>& last_selection() const { return last_selection_; }

 private:
  std::unique_ptr<Strategy> inner_;
  RobustOptions options_;
  std::vector<std::string> last_selection_;
};

}  // namespace fe::fed
