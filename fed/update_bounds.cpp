#include "fed/update_bounds.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "core/number_text.h"
#include "fed/federation_config.h"
#include "fed/partition.h"
#include "fed/privacy.h"
#include "fed/roster.h"

namespace fe::fed {
namespace {

constexpr std::array<const char*, 3> kActionNames = {"off", "clip", "refuse"};

double element(const Tensor& t, int64_t i) {
  return t.dtype() == DType::f32 ? static_cast<double>(t.as<float>()[i]) : t.as<double>()[i];
}

// The ⌈n/2⌉-th smallest of n values.
double lower_median(std::vector<double> values) {
  const auto middle = values.begin() + static_cast<std::ptrdiff_t>((values.size() - 1) / 2);
  std::nth_element(values.begin(), middle, values.end());
  return *middle;
}

// global + scale·(params − global), in each parameter's dtype.
NamedTensors scaled_update(const NamedTensors& global, const NamedTensors& params, double scale) {
  NamedTensors out;
  for (size_t t = 0; t < params.size(); ++t) {
    const Tensor& x = global[t].second;
    const Tensor& p = params[t].second;
    Tensor q = Tensor::empty(p.shape(), p.dtype());
    for (int64_t i = 0; i < q.numel(); ++i) {
      const double value = element(x, i) + scale * (element(p, i) - element(x, i));
      if (q.dtype() == DType::f32)
        q.as<float>()[i] = static_cast<float>(value);
      else
        q.as<double>()[i] = value;
    }
    out.emplace_back(params[t].first, q);
  }
  return out;
}

int64_t saturating_product(std::initializer_list<int64_t> factors) {
  int64_t product = 1;
  for (int64_t f : factors)
    if (__builtin_mul_overflow(product, f, &product)) return std::numeric_limits<int64_t>::max();
  return product;
}

}  // namespace

NormBoundAction parse_norm_bound_action(const std::string& name) {
  for (size_t i = 0; i < kActionNames.size(); ++i)
    if (name == kActionNames[i]) return static_cast<NormBoundAction>(i);
  throw Error("unknown max_update_norm action '" + name + "' (off, clip or refuse)");
}

const char* norm_bound_action_name(NormBoundAction action) { return kActionNames.at(static_cast<size_t>(action)); }

int64_t round_share(const FederationConfig& config, const Roster& roster, const std::string& name) {
  std::vector<ParticipantVolume> volumes;
  size_t index = 0;
  for (const ParticipantConfig& q : config.participants) {
    if (q.name == name) index = volumes.size();
    volumes.push_back(roster.volume_of(q.name));
  }
  return examples_per_round(config.participant(name).partition, volumes, index, config.server.rounds);
}

int64_t max_result_examples(const FederationConfig& config, const Roster& roster, const std::string& name) {
  const ParticipantConfig& p = config.participant(name);
  if (p.partition.strategy != PartitionStrategy::all) return round_share(config, roster, name);
  return saturating_product({p.train.steps, p.train.grad_accum_steps, p.train.micro_batch_size, p.world_size()});
}

double update_norm(const NamedTensors& global, const NamedTensors& params) {
  double sum = 0;
  for (size_t t = 0; t < global.size(); ++t)
    for (int64_t i = 0; i < global[t].second.numel(); ++i) {
      const double d = element(params[t].second, i) - element(global[t].second, i);
      sum += d * d;
    }
  return std::sqrt(sum);
}

std::vector<NormVerdict> bound_update_norms(const UpdateNormOptions& options, const NamedTensors& global,
                                            std::vector<ClientResult>& results) {
  if (options.action == NormBoundAction::off || results.empty()) return {};
  std::vector<double> norms;
  for (const ClientResult& result : results) {
    check_result_tensors("max_update_norm", global, result);
    norms.push_back(update_norm(global, result.params));
  }
  const double bound = options.absolute > 0 ? options.absolute : options.median_multiple * lower_median(norms);
  if (!(bound > 0)) return {};
  std::vector<NormVerdict> verdicts;
  std::vector<ClientResult> kept;
  for (size_t i = 0; i < results.size(); ++i) {
    if (norms[i] <= bound) {
      kept.push_back(std::move(results[i]));
      continue;
    }
    // An infinite norm has no direction to keep.
    const bool refuse = options.action == NormBoundAction::refuse || !std::isfinite(norms[i]);
    verdicts.push_back({results[i].client_id, norms[i], bound, refuse});
    if (refuse) continue;
    results[i].params = scaled_update(global, results[i].params, bound / norms[i]);
    kept.push_back(std::move(results[i]));
  }
  results = std::move(kept);
  return verdicts;
}

std::string NormVerdict::reason() const {
  return "update norm " + number_text(norm) + " exceeds server.max_update_norm's bound " + number_text(bound);
}

StrategySnapshot::StrategySnapshot(Strategy& strategy, DpStrategy* dp)
    : strategy_(strategy), dp_(dp), state_(strategy.state()) {
  if (dp) {
    dp_state_ = dp->mechanism().state();
    dp_sampling_rates_ = dp->sampling_rates();
  }
}

void StrategySnapshot::restore() const {
  strategy_.load_state(state_);
  if (dp_) dp_->load_privacy_state(dp_state_, dp_sampling_rates_);
}

std::optional<std::string> non_finite_reason(const NamedTensors& tensors) {
  for (const auto& [name, tensor] : tensors)
    if (const std::optional<NonFiniteElement> bad = find_non_finite(tensor))
      return "tensor '" + name + "' element " + std::to_string(bad->index) + " is " + value_text(bad->value);
  return std::nullopt;
}

}  // namespace fe::fed
