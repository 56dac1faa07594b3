#include "fed/strategy.h"

#include <algorithm>
#include <cmath>

#include "engine/rng.h"
#include "core/number_text.h"
#include "kernels/elementwise.h"

namespace fe::fed {
namespace {

// Aggregation reads CPU f32 or f64 tensors; `owner` says whose tensor it is in the message.
void require_aggregatable(const char* where, const std::string& owner, const std::string& name, const Tensor& tensor) {
  if (tensor.device() != Device::cpu || (tensor.dtype() != DType::f32 && tensor.dtype() != DType::f64))
    throw Error(std::string(where) + ": " + owner + ", tensor '" + name + "' is " + tensor.view().str() +
                "; aggregation and differential privacy take CPU f32 or f64 tensors");
}

void check_result(const NamedTensors& global, const ClientResult& result) {
  if (result.num_examples <= 0)
    throw Error("aggregate: client '" + result.client_id +
                "' reports num_examples = " + std::to_string(result.num_examples) + "; it must be positive");
  check_result_tensors("aggregate", global, result);
}

template <class T>
void add_weighted(double* sum, const T* x, double weight, int64_t n) {
  for (int64_t i = 0; i < n; ++i) sum[i] += weight * static_cast<double>(x[i]);
}

void add_weighted(const Tensor& sum, const Tensor& x, double weight) {
  if (x.dtype() == DType::f32)
    add_weighted(sum.as<double>(), x.as<float>(), weight, x.numel());
  else
    add_weighted(sum.as<double>(), x.as<double>(), weight, x.numel());
}

// x̄ in f64, one tensor per global tensor: the strategies compute with it unrounded.
std::vector<Tensor> weighted_mean_f64(const NamedTensors& global, const std::vector<ClientResult>& results) {
  if (results.empty()) throw Error("aggregate: no client results to aggregate");
  for (const auto& [name, tensor] : global) require_aggregatable("aggregate", "global parameters", name, tensor);
  double total_examples = 0;
  for (const ClientResult& result : results) {
    check_result(global, result);
    total_examples += static_cast<double>(result.num_examples);
  }
  std::vector<Tensor> means;
  for (size_t t = 0; t < global.size(); ++t) {
    Tensor sum = Tensor::zeros(global[t].second.shape(), DType::f64);
    for (const ClientResult& result : results)
      add_weighted(sum, result.params[t].second, static_cast<double>(result.num_examples));
    double* mean = sum.as<double>();
    for (int64_t i = 0; i < sum.numel(); ++i) mean[i] /= total_examples;
    means.push_back(sum);
  }
  return means;
}

class FedAvg : public Strategy {
 public:
  explicit FedAvg(ParticipantSampling sampling) : Strategy("fedavg", sampling) {}
  NamedTensors aggregate(int64_t, const NamedTensors& global, const std::vector<ClientResult>& results) override {
    return weighted_mean(global, results);
  }

 protected:
  FedAvg(std::string name, ParticipantSampling sampling) : Strategy(std::move(name), sampling) {}
};

// FedAvg on the server; the proximal term lives in the participants' loss.
class FedProx final : public FedAvg {
 public:
  FedProx(double proximal_mu, ParticipantSampling sampling) : FedAvg("fedprox", sampling), proximal_mu_(proximal_mu) {}
  std::map<std::string, ConfigValue> fit_config(int64_t) const override { return {{"proximal_mu", proximal_mu_}}; }

 private:
  double proximal_mu_;
};

// How v takes in the squared pseudo-gradient; the one difference between the FedOpt strategies.
enum class SecondMoment { adagrad, adam, yogi };

double next_second_moment(SecondMoment rule, double v, double delta_squared, double beta2) {
  switch (rule) {
    case SecondMoment::adagrad:
      return v + delta_squared;
    case SecondMoment::adam:
      return beta2 * v + (1 - beta2) * delta_squared;
    case SecondMoment::yogi: {
      const double difference = v - delta_squared;
      const double sign = static_cast<double>((difference > 0) - (difference < 0));
      return v - (1 - beta2) * delta_squared * sign;
    }
  }
  return v;
}

// fedadagrad, fedadam, fedyogi. m and v are kept in f64 whatever the parameters' dtype, so a
// checkpointed state restores them exactly.
//
// state(): "m.<name>" and "v.<name>" (f64, the parameter's shape) for every parameter, in name
// order, then "step" (i64 [1], rounds aggregated). Empty before the first aggregate: m and v take
// their names and shapes from the first global parameters, and load_state({}) restores that fresh
// state.
class FedOpt final : public Strategy {
 public:
  FedOpt(std::string name, SecondMoment rule, const StrategyOptions& options)
      : Strategy(std::move(name), options.sampling),
        rule_(rule),
        eta_(options.eta),
        beta1_(options.beta1),
        beta2_(options.beta2),
        tau_(options.tau),
        initial_v_(options.initial_accumulator < 0 ? options.tau * options.tau : options.initial_accumulator),
        bias_correction_(options.bias_correction && rule != SecondMoment::adagrad) {}

  NamedTensors aggregate(int64_t, const NamedTensors& global, const std::vector<ClientResult>& results) override {
    const std::vector<Tensor> means = weighted_mean_f64(global, results);
    if (moments_.empty()) start_moments(global);
    check_moments_match(global);
    ++step_;
    const double m_correction = bias_correction_ ? 1 - std::pow(beta1_, static_cast<double>(step_)) : 1;
    const double v_correction = bias_correction_ ? 1 - std::pow(beta2_, static_cast<double>(step_)) : 1;
    NamedTensors updated;
    for (size_t t = 0; t < global.size(); ++t) {
      const auto& [tensor_name, x] = global[t];
      Tensor next = x.to(DType::f64);
      step_tensor(moments_.at(tensor_name), means[t], next, m_correction, v_correction);
      updated.emplace_back(tensor_name, next.to(x.dtype()));
    }
    return updated;
  }

  NamedTensors state() const override {
    if (moments_.empty()) return {};
    NamedTensors state;
    for (const auto& [tensor_name, moments] : moments_) {
      state.emplace_back("m." + tensor_name, moments.m.clone());
      state.emplace_back("v." + tensor_name, moments.v.clone());
    }
    Tensor step = Tensor::empty({1}, DType::i64);
    step.as<int64_t>()[0] = step_;
    state.emplace_back("step", step);
    return state;
  }

  void load_state(const NamedTensors& state) override {
    std::map<std::string, Moments> moments;
    int64_t step = 0;
    for (const auto& [key, tensor] : state) {
      if (key == "step")
        step = read_step(tensor);
      else
        add_moment(moments, key, tensor);
    }
    for (const auto& [tensor_name, pair] : moments) {
      if (!pair.m.defined() || !pair.v.defined())
        throw Error(name() + " state: tensor '" + tensor_name + "' has " +
                    (pair.m.defined() ? "m but no v" : "v but no m"));
      if (!(pair.m.shape() == pair.v.shape()))
        throw Error(name() + " state: m." + tensor_name + " is " + pair.m.shape().str() + " but v." + tensor_name +
                    " is " + pair.v.shape().str());
    }
    if (!state.empty() && (moments.empty() || step < 1))
      throw Error(name() + " state: needs m.<name> and v.<name> tensors and a \"step\" ≥ 1 (rounds aggregated)");
    moments_ = std::move(moments);
    step_ = step;
  }

 private:
  struct Moments {
    Tensor m, v;  // f64
  };

  void start_moments(const NamedTensors& global) {
    for (const auto& [tensor_name, x] : global) {
      Moments& moments = moments_[tensor_name];
      moments.m = Tensor::zeros(x.shape(), DType::f64);
      moments.v = Tensor::empty(x.shape(), DType::f64);
      kernels::fill(moments.v, initial_v_);
    }
  }

  void check_moments_match(const NamedTensors& global) const {
    for (const auto& [tensor_name, x] : global) {
      const auto found = moments_.find(tensor_name);
      if (found == moments_.end())
        throw Error(name() + ": the optimizer state has no moments for tensor '" + tensor_name + "'");
      if (!(found->second.m.shape() == x.shape()))
        throw Error(name() + ": the optimizer state for tensor '" + tensor_name + "' has shape " +
                    found->second.m.shape().str() + ", the global parameters have " + x.shape().str());
    }
    if (moments_.size() != global.size())
      throw Error(name() + ": the optimizer state holds tensors the global parameters lack (" +
                  std::to_string(moments_.size()) + " in the state, " + std::to_string(global.size()) + " global)");
  }

  // x (f64, updated in place) ← x + η·m̂ / (√v̂ + τ) with Δ = x̄ − x.
  void step_tensor(Moments& moments, const Tensor& mean, const Tensor& x, double m_correction,
                   double v_correction) const {
    double* m = moments.m.as<double>();
    double* v = moments.v.as<double>();
    const double* x_bar = mean.as<double>();
    double* p = x.as<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double delta = x_bar[i] - p[i];
      m[i] = beta1_ * m[i] + (1 - beta1_) * delta;
      v[i] = next_second_moment(rule_, v[i], delta * delta, beta2_);
      p[i] += eta_ * (m[i] / m_correction) / (std::sqrt(v[i] / v_correction) + tau_);
    }
  }

  int64_t read_step(const Tensor& tensor) const {
    if (tensor.dtype() != DType::i64 || tensor.numel() != 1 || tensor.device() != Device::cpu)
      throw Error(name() + " state: \"step\" must be a 1-element CPU i64 tensor, got " + tensor.view().str());
    return tensor.as<int64_t>()[0];
  }

  void add_moment(std::map<std::string, Moments>& moments, const std::string& key, const Tensor& tensor) const {
    const bool is_m = key.rfind("m.", 0) == 0, is_v = key.rfind("v.", 0) == 0;
    if (!is_m && !is_v)
      throw Error(name() + " state: unexpected tensor '" + key + "' (expected m.<name>, v.<name> and step)");
    if (tensor.dtype() != DType::f64 || tensor.device() != Device::cpu)
      throw Error(name() + " state: tensor '" + key + "' must be a CPU f64 tensor, got " + tensor.view().str());
    Tensor& slot = is_m ? moments[key.substr(2)].m : moments[key.substr(2)].v;
    if (slot.defined()) throw Error(name() + " state: tensor '" + key + "' appears twice");
    slot = tensor.clone();
  }

  SecondMoment rule_;
  double eta_, beta1_, beta2_, tau_, initial_v_;
  bool bias_correction_;
  std::map<std::string, Moments> moments_;  // by parameter name
  int64_t step_ = 0;
};

void require_option(bool valid, const StrategyOptions& options, const char* option, double value, const char* rule) {
  if (!valid)
    throw Error("strategy " + options.name + ": " + option + " = " + number_text(value) + "; it must be " + rule);
}

void validate_fedopt_options(const StrategyOptions& o) {
  require_option(o.eta > 0, o, "eta", o.eta, "> 0");
  require_option(o.beta1 >= 0 && o.beta1 < 1, o, "beta1", o.beta1, "in [0, 1)");
  require_option(o.beta2 >= 0 && o.beta2 < 1, o, "beta2", o.beta2, "in [0, 1)");
  require_option(o.tau > 0, o, "tau", o.tau, "> 0");
  require_option(!std::isnan(o.initial_accumulator), o, "initial_accumulator", o.initial_accumulator,
                 "a number (negative: tau²)");
}

}  // namespace

void check_result_tensors(const char* where, const NamedTensors& global, const ClientResult& result) {
  const std::string client = "client '" + result.client_id + "'";
  const auto fail = [&](const std::string& what) { throw Error(std::string(where) + ": " + client + what); };
  for (size_t i = 0; i < global.size(); ++i) {
    const auto& [name, expected] = global[i];
    if (i >= result.params.size())
      fail(" sent " + std::to_string(result.params.size()) + " tensors and lacks tensor '" + name + "'");
    const auto& [got_name, got] = result.params[i];
    if (got_name != name)
      fail(" sent tensor '" + got_name + "' where tensor '" + name +
           "' belongs (same names in the same order as the global parameters)");
    if (!(got.shape() == expected.shape()))
      fail(", tensor '" + name + "' has shape " + got.shape().str() + ", the global parameters have " +
           expected.shape().str());
    require_aggregatable(where, client, name, got);
  }
  if (result.params.size() > global.size())
    fail(" sent tensor '" + result.params[global.size()].first + "', which the global parameters lack");
}

size_t Strategy::sample_size(size_t available) const {
  const double wanted = std::max<double>(static_cast<double>(sampling_.min_clients),
                                         std::ceil(sampling_.fraction * static_cast<double>(available)));
  return std::min(static_cast<size_t>(wanted), available);
}

std::vector<std::string> Strategy::sample(int64_t round, std::vector<std::string> available) {
  const size_t wanted = sample_size(available.size());
  Rng rng(derive_seed(sampling_.seed, 0x73616d706c65ull /* "sample" */, static_cast<uint64_t>(round)));
  for (size_t i = available.size(); i > 1; --i) std::swap(available[i - 1], available[rng.next_u64() % i]);
  available.resize(wanted);
  std::sort(available.begin(), available.end());
  return available;
}

std::map<std::string, ConfigValue> Strategy::fit_config(int64_t) const { return {}; }

NamedTensors weighted_mean(const NamedTensors& global, const std::vector<ClientResult>& results) {
  const std::vector<Tensor> means = weighted_mean_f64(global, results);
  NamedTensors averaged;
  for (size_t t = 0; t < global.size(); ++t)
    averaged.emplace_back(global[t].first, means[t].to(global[t].second.dtype()));
  return averaged;
}

std::unique_ptr<Strategy> make_strategy(const StrategyOptions& options) {
  const std::map<std::string, SecondMoment> fedopt_rules = {
      {"fedadagrad", SecondMoment::adagrad}, {"fedadam", SecondMoment::adam}, {"fedyogi", SecondMoment::yogi}};
  if (options.name == "fedavg") return std::make_unique<FedAvg>(options.sampling);
  if (options.name == "fedprox") {
    require_option(options.proximal_mu >= 0, options, "proximal_mu", options.proximal_mu, ">= 0");
    return std::make_unique<FedProx>(options.proximal_mu, options.sampling);
  }
  if (const auto rule = fedopt_rules.find(options.name); rule != fedopt_rules.end()) {
    validate_fedopt_options(options);
    return std::make_unique<FedOpt>(options.name, rule->second, options);
  }
  throw Error("unknown strategy '" + options.name + "' (fedavg, fedprox, fedadagrad, fedadam or fedyogi)");
}

}  // namespace fe::fed
