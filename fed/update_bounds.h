// fed/update_bounds.h — how far one participant's result may move a round: the examples it may
// claim, the size of its update, and what the server refuses to commit.
//
// Examples. A result's num_examples weighs it in the strategies' mean, and it is the participant's
// own claim; it may be no larger than what the server asked for: the participant's share of data
// for the round (fed/partition.h, from the volumes in the roster) when a partition strategy other
// than `all` assigns one, else the rows of train.steps global batches (train.steps ×
// grad_accum_steps × micro_batch_size × ranks). The share is computed once, by round_share, for
// the fit message and for this bound alike.
//
// Update norm. Δᵢ = (result i's parameters) − (the round's global adapter), all tensors together.
// Each round, every ‖Δᵢ‖₂ is held to a bound: `absolute` when set, else `median_multiple` times
// the round's lower median of ‖Δ‖ (the ⌈n/2⌉-th smallest: with fewer than half the results
// hostile, it is at most an honest norm, and with two results it is the smaller one). A result
// over the bound is clipped (Δᵢ scaled to the bound) or refused. The default, clip at 10× the
// median: participants that train the same steps from the same adapter move it by norms within a
// small factor of each other (their data and learning-rate overrides differ, not the size of the
// step), so 10× leaves honest outliers untouched while one hostile result can move a mean of n
// results by at most 10/n of a typical update. A median of 0 (no participant moved) sets no bound.
//
// Commit. An aggregate with a NaN or Inf anywhere is not committed (non_finite_reason says where),
// and the strategy's state goes back to what it was before (StrategySnapshot).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fed/strategy.h"

namespace fe::fed {

struct FederationConfig;
class Roster;
class DpStrategy;

enum class NormBoundAction { off, clip, refuse };
NormBoundAction parse_norm_bound_action(const std::string& name);  // Error listing the valid names
const char* norm_bound_action_name(NormBoundAction action);

// server.max_update_norm
struct UpdateNormOptions {
  NormBoundAction action = NormBoundAction::clip;
  double median_multiple = 10;  // the bound, in lower medians of the round's update norms
  double absolute = 0;          // > 0: this bound instead, the same every round
};

// The participant's share of data for a round under its partition strategy (not `all`), from
// every configured participant's volume in the roster.
int64_t round_share(const FederationConfig& config, const Roster& roster, const std::string& name);
// The most examples a result of this participant may report for one round.
int64_t max_result_examples(const FederationConfig& config, const Roster& roster, const std::string& name);

// ‖params − global‖₂ over every tensor, in double. Tensors as check_result_tensors admits them.
double update_norm(const NamedTensors& global, const NamedTensors& params);

// What became of a result over the norm bound.
struct NormVerdict {
  std::string client_id;
  double norm = 0;
  double bound = 0;
  bool refused = false;  // else clipped to the bound
  // "update norm 1e+06 exceeds server.max_update_norm's bound 0.1"
  std::string reason() const;
};

// Applies options (server.max_update_norm) to the round's results: a result over the bound gets
// its update scaled to the bound (clip; its tensors are replaced, global's stay untouched) or is
// removed from `results` (refuse). One verdict per result over the bound, in results' order.
std::vector<NormVerdict> bound_update_norms(const UpdateNormOptions& options, const NamedTensors& global,
                                            std::vector<ClientResult>& results);

// The strategy's state (and DP's, when it wraps the strategy) as it was when taken: an aggregate
// that is not committed must leave no trace in the optimizer's moments or the privacy ledger.
class StrategySnapshot {
 public:
  StrategySnapshot(Strategy& strategy, DpStrategy* dp);
  void restore() const;

 private:
  Strategy& strategy_;
  DpStrategy* dp_;
  NamedTensors state_, dp_state_;
  std::vector<double> dp_sampling_rates_;
};

// Where the first NaN or Inf of `tensors` is ("tensor 'x' element 3 is nan"); nullopt when all
// are finite.
std::optional<std::string> non_finite_reason(const NamedTensors& tensors);

}  // namespace fe::fed
