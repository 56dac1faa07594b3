#include "fed/robust_aggregation.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "core/number_text.h"

namespace fe::fed {
namespace {

constexpr std::array<const char*, 4> kRuleNames = {"mean", "median", "trimmed_mean", "krum"};

double element(const Tensor& t, int64_t i) {
  return t.dtype() == DType::f32 ? static_cast<double>(t.as<float>()[i]) : t.as<double>()[i];
}

void check_results(const char* rule, const NamedTensors& global, const std::vector<ClientResult>& results) {
  if (results.empty()) throw Error(std::string(rule) + ": no client results to aggregate");
  for (const ClientResult& result : results) check_result_tensors(rule, global, result);
}

// For every coordinate, the n results' values sorted, handed to `reduce`; one f64 tensor per
// global tensor holds what it returns.
template <class Reduce>
std::vector<Tensor> per_coordinate(const NamedTensors& global, const std::vector<ClientResult>& results,
                                   Reduce&& reduce) {
  std::vector<Tensor> out;
  std::vector<double> values(results.size());
  for (size_t t = 0; t < global.size(); ++t) {
    Tensor reduced = Tensor::empty(global[t].second.shape(), DType::f64);
    double* target = reduced.as<double>();
    for (int64_t i = 0; i < reduced.numel(); ++i) {
      for (size_t r = 0; r < results.size(); ++r) values[r] = element(results[r].params[t].second, i);
      std::sort(values.begin(), values.end());
      target[i] = reduce(values);
    }
    out.push_back(reduced);
  }
  return out;
}

// ‖a − b‖² over every tensor of two results, in double.
double squared_distance(const NamedTensors& a, const NamedTensors& b) {
  double sum = 0;
  for (size_t t = 0; t < a.size(); ++t)
    for (int64_t i = 0; i < a[t].second.numel(); ++i) {
      const double d = element(a[t].second, i) - element(b[t].second, i);
      sum += d * d;
    }
  return sum;
}

// The unweighted mean of the chosen results, in f64.
std::vector<Tensor> mean_of(const NamedTensors& global, const std::vector<ClientResult>& results,
                            const std::vector<size_t>& chosen) {
  std::vector<Tensor> out;
  for (size_t t = 0; t < global.size(); ++t) {
    Tensor sum = Tensor::zeros(global[t].second.shape(), DType::f64);
    double* s = sum.as<double>();
    for (size_t r : chosen)
      for (int64_t i = 0; i < sum.numel(); ++i) s[i] += element(results[r].params[t].second, i);
    for (int64_t i = 0; i < sum.numel(); ++i) s[i] /= static_cast<double>(chosen.size());
    out.push_back(sum);
  }
  return out;
}

void require_option(bool valid, const char* option, const std::string& value, const char* rule) {
  if (!valid) throw Error(std::string("robust aggregation: ") + option + " = " + value + "; it must be " + rule);
}

}  // namespace

RobustRule parse_robust_rule(const std::string& name) {
  for (size_t i = 0; i < kRuleNames.size(); ++i)
    if (name == kRuleNames[i]) return static_cast<RobustRule>(i);
  throw Error("unknown aggregation rule '" + name + "' (mean, median, trimmed_mean or krum)");
}

const char* robust_rule_name(RobustRule rule) { return kRuleNames.at(static_cast<size_t>(rule)); }

void validate_robust_options(const RobustOptions& o) {
  require_option(o.trim_fraction >= 0 && o.trim_fraction < 0.5, "trim_fraction", number_text(o.trim_fraction),
                 "in [0, 0.5) (the share of values dropped at each end)");
  require_option(o.byzantine >= 0, "byzantine", std::to_string(o.byzantine), ">= 0");
  require_option(o.selected >= 1, "selected", std::to_string(o.selected), ">= 1");
}

std::vector<Tensor> coordinate_median(const NamedTensors& global, const std::vector<ClientResult>& results) {
  check_results("median", global, results);
  return per_coordinate(global, results, [](const std::vector<double>& sorted) {
    const size_t n = sorted.size();
    return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  });
}

std::vector<Tensor> trimmed_mean(const NamedTensors& global, const std::vector<ClientResult>& results,
                                 double trim_fraction) {
  check_results("trimmed_mean", global, results);
  require_option(trim_fraction >= 0 && trim_fraction < 0.5, "trim_fraction", number_text(trim_fraction), "in [0, 0.5)");
  const size_t n = results.size();
  const auto cut = static_cast<size_t>(std::floor(trim_fraction * static_cast<double>(n)));
  return per_coordinate(global, results, [&](const std::vector<double>& sorted) {
    double sum = 0;
    for (size_t i = cut; i < n - cut; ++i) sum += sorted[i];
    return sum / static_cast<double>(n - 2 * cut);
  });
}

std::vector<size_t> krum_select(const NamedTensors& global, const std::vector<ClientResult>& results, int64_t byzantine,
                                int64_t selected) {
  check_results("krum", global, results);
  require_option(byzantine >= 0, "byzantine", std::to_string(byzantine), ">= 0");
  require_option(selected >= 1, "selected", std::to_string(selected), ">= 1");
  const size_t n = results.size();
  std::vector<std::vector<double>> distance(n, std::vector<double>(n, 0.0));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j)
      distance[i][j] = distance[j][i] = squared_distance(results[i].params, results[j].params);
  const int64_t others = static_cast<int64_t>(n) - 1;
  const auto closest = static_cast<size_t>(std::min(others, std::max<int64_t>(1, others + 1 - byzantine - 2)));
  std::vector<double> score(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> to_others;
    for (size_t j = 0; j < n; ++j)
      if (j != i) to_others.push_back(distance[i][j]);
    std::sort(to_others.begin(), to_others.end());
    score[i] = std::accumulate(to_others.begin(), to_others.begin() + static_cast<std::ptrdiff_t>(closest), 0.0);
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] < score[b]; });
  order.resize(std::min(n, static_cast<size_t>(selected)));
  return order;
}

RobustStrategy::RobustStrategy(std::unique_ptr<Strategy> inner, const RobustOptions& options)
    : Strategy(inner->name() + "+" + robust_rule_name(options.rule), inner->sampling()),
      inner_(std::move(inner)),
      options_(options) {
  if (options.rule == RobustRule::mean) throw Error("robust aggregation: RobustStrategy needs a rule other than mean");
  validate_robust_options(options);
}

NamedTensors RobustStrategy::aggregate(int64_t round, const NamedTensors& global,
                                       const std::vector<ClientResult>& results) {
  std::vector<Tensor> robust;
  last_selection_.clear();
  switch (options_.rule) {
    case RobustRule::median:
      robust = coordinate_median(global, results);
      break;
    case RobustRule::trimmed_mean:
      robust = trimmed_mean(global, results, options_.trim_fraction);
      break;
    case RobustRule::krum: {
      const std::vector<size_t> chosen = krum_select(global, results, options_.byzantine, options_.selected);
      for (size_t i : chosen) last_selection_.push_back(results[i].client_id);
      robust = mean_of(global, results, chosen);
      break;
    }
    case RobustRule::mean:
      return inner_->aggregate(round, global, results);
  }
  // One result of weight 1, kept in f64: the wrapped strategy's weighted mean of it is x̂ exactly.
  ClientResult aggregate{.client_id = std::string(robust_rule_name(options_.rule)), .num_examples = 1};
  for (size_t t = 0; t < global.size(); ++t) aggregate.params.emplace_back(global[t].first, robust[t]);
  return inner_->aggregate(round, global, {aggregate});
}

}  // namespace fe::fed
