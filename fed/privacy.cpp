#include "fed/privacy.h"

#include <cmath>
#include <limits>

#include "core/number_text.h"
#include "kernels/elementwise.h"

namespace fe::fed {
namespace {

constexpr const char* kClipNormState = "dp.clip_norm";

// A client-side participant clips in its own (possibly f32) arithmetic, so a correctly clipped
// update can land a hair above C; this slack keeps the server from rescaling those, while an
// update that was never clipped is still cut down (its sensitivity grows by at most 1e-6·C).
constexpr double kClientClipSlack = 1e-6;

bool is_client_mode(DpMode mode) { return mode == DpMode::client_fixed || mode == DpMode::client_adaptive; }
bool is_adaptive(DpMode mode) { return mode == DpMode::server_adaptive || mode == DpMode::client_adaptive; }

void require_option(bool valid, const char* option, double value, const char* rule) {
  if (!valid) throw Error(std::string("privacy: ") + option + " = " + number_text(value) + "; it must be " + rule);
}

// Andrew et al.'s Theorem 1 needs z⁻² − (2σ_b)⁻² > 0: the count query takes part of the budget,
// and a count noise σ_b ≤ z/2 would take all of it (or more).
void require_count_noise_fits(double z, double sigma_b, bool defaulted) {
  if (z == 0) return;  // no noise at all: nothing to split
  const double rest = 1 / (z * z) - 1 / (4 * sigma_b * sigma_b);
  if (rest > 0) return;
  throw Error("privacy: clipped_count_stddev σ_b = " + number_text(sigma_b) + (defaulted ? " (the default m/20)" : "") +
              " is too small for noise_multiplier z = " + number_text(z) +
              ": adaptive clipping needs z⁻² − (2σ_b)⁻² > 0, i.e. σ_b > z/2 = " + number_text(z / 2) +
              ", so the clipped-count noise leaves part of the budget for the update" +
              (defaulted ? "; sample more participants per round (m > 10·z) or set clipped_count_stddev" : ""));
}

void validate(const DpOptions& o) {
  require_option(o.noise_multiplier >= 0 && std::isfinite(o.noise_multiplier), "noise_multiplier", o.noise_multiplier,
                 ">= 0");
  require_option(o.clip_norm > 0 && std::isfinite(o.clip_norm), "clip_norm", o.clip_norm, "> 0");
  require_option(o.target_quantile > 0 && o.target_quantile < 1, "target_quantile", o.target_quantile, "in (0, 1)");
  require_option(o.clip_learning_rate >= 0 && std::isfinite(o.clip_learning_rate), "clip_learning_rate",
                 o.clip_learning_rate, ">= 0");
  require_option(std::isfinite(o.clipped_count_stddev), "clipped_count_stddev", o.clipped_count_stddev,
                 "a number (negative: m/20)");
  require_option(o.delta > 0 && o.delta < 1, "delta", o.delta, "in (0, 1)");
  require_option(o.target_epsilon >= 0 && !std::isnan(o.target_epsilon), "target_epsilon", o.target_epsilon,
                 ">= 0 (0: no limit)");
  // The default σ_b depends on the round's m; that case is checked when m is known.
  if (is_adaptive(o.mode) && o.clipped_count_stddev >= 0)
    require_count_noise_fits(o.noise_multiplier, o.clipped_count_stddev, false);
}

double count_stddev(const DpOptions& o, int64_t sampled) {
  return o.clipped_count_stddev >= 0 ? o.clipped_count_stddev : static_cast<double>(sampled) / 20.0;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The noise of a round depends only on (seed, round, stream), never on how many rounds this
// process has run, so a resumed run draws exactly the noise the uninterrupted one would have.
// Stream 0 is the update noise, stream 1 the clipped-count noise: separate streams keep the count
// noise independent of the adapter's size.
Rng round_rng(uint64_t seed, int64_t round, uint64_t stream) {
  return Rng(splitmix64(splitmix64(seed ^ splitmix64(static_cast<uint64_t>(round))) + stream));
}

// Andrew et al. 2021, geometric update: C ← C·exp(−η_C·(b̃ − γ)) with b̃ the noisy fraction of
// updates that needed no clipping. Too many unclipped (b̃ > γ) shrinks C, too few grows it.
double next_clip_norm(const DpOptions& o, double clip, int64_t round, double unclipped, int64_t sampled) {
  Rng count_rng = round_rng(o.seed, round, 1);
  const double noisy_fraction =
      (unclipped + count_stddev(o, sampled) * count_rng.normal()) / static_cast<double>(sampled);
  return clip * std::exp(-o.clip_learning_rate * (noisy_fraction - o.target_quantile));
}

void require_cpu_float(const std::string& owner, const std::string& name, const Tensor& tensor) {
  if (tensor.device() != Device::cpu || (tensor.dtype() != DType::f32 && tensor.dtype() != DType::f64))
    throw Error("privacy: " + owner + ", tensor '" + name + "' is " + tensor.view().str() +
                "; differential privacy takes CPU f32 or f64 tensors");
}

template <class T>
double element(const Tensor& t, int64_t i) {
  return static_cast<double>(t.as<T>()[i]);
}

double element(const Tensor& t, int64_t i) {
  return t.dtype() == DType::f32 ? element<float>(t, i) : element<double>(t, i);
}

// Δᵢ = paramsᵢ − global in fresh f64 tensors: the inputs stay untouched, and clipping and
// averaging lose nothing to f32 rounding.
NamedTensors update_of(const NamedTensors& global, const ClientResult& result) {
  NamedTensors delta;
  for (size_t t = 0; t < global.size(); ++t) {
    const Tensor& x = global[t].second;
    const Tensor& p = result.params[t].second;
    Tensor d = Tensor::empty(x.shape(), DType::f64);
    double* out = d.as<double>();
    for (int64_t i = 0; i < d.numel(); ++i) out[i] = element(p, i) - element(x, i);
    delta.emplace_back(global[t].first, d);
  }
  return delta;
}

NamedTensors zeros_like_f64(const NamedTensors& global) {
  NamedTensors zeros;
  for (const auto& [name, x] : global) zeros.emplace_back(name, Tensor::zeros(x.shape(), DType::f64));
  return zeros;
}

void accumulate(const NamedTensors& sum, const NamedTensors& delta) {
  for (size_t t = 0; t < sum.size(); ++t) kernels::axpy(sum[t].second, delta[t].second, 1.0);
}

// global + update, converted back to each global tensor's dtype.
NamedTensors apply_update(const NamedTensors& global, const NamedTensors& update) {
  NamedTensors next;
  for (size_t t = 0; t < global.size(); ++t) {
    Tensor x = global[t].second.to(DType::f64);
    kernels::axpy(x, update[t].second, 1.0);
    next.emplace_back(global[t].first, x.to(global[t].second.dtype()));
  }
  return next;
}

struct ClippedMean {
  NamedTensors mean;     // (1/m)·Σ clip(Δᵢ), f64
  double unclipped = 0;  // Σbᵢ
};

// Server modes clip to C and measure bᵢ themselves; client modes take the reported bᵢ (only the
// participant saw its unclipped update) but still clip, with a little slack, so an update that
// was sent unclipped cannot exceed the sensitivity the noise assumes.
ClippedMean clipped_mean(DpMode mode, const NamedTensors& global, const std::vector<ClientResult>& results,
                         const std::vector<double>& clipped_bits, double clip) {
  const double applied_clip = is_client_mode(mode) ? clip * (1 + kClientClipSlack) : clip;
  ClippedMean out{zeros_like_f64(global), 0};
  for (size_t i = 0; i < results.size(); ++i) {
    const std::string client = "privacy: client '" + results[i].client_id + "'";
    const NamedTensors delta = update_of(global, results[i]);
    double norm = 0;
    try {
      norm = clip_to_norm(delta, applied_clip);
    } catch (const Error& e) {
      throw Error(client + ": " + e.what());
    }
    if (mode == DpMode::client_adaptive) {
      // bᵢ ∈ {0, 1}: the count query's sensitivity of 1, which σ_b is calibrated to, needs it.
      const double bit = clipped_bits[i];
      if (bit != 0 && bit != 1)
        throw Error(client + " reported clipped bit " + number_text(bit) + "; it must be 0 or 1");
      out.unclipped += bit;
    } else {
      out.unclipped += norm <= clip ? 1 : 0;  // bᵢ of the update as sent, before clipping
    }
    accumulate(out.mean, delta);
  }
  for (const auto& [name, tensor] : out.mean) kernels::scale(tensor, 1.0 / static_cast<double>(results.size()));
  return out;
}

template <class T>
void add_noise(const Tensor& tensor, double stddev, Rng& rng) {
  T* x = tensor.as<T>();
  for (int64_t i = 0; i < tensor.numel(); ++i) x[i] = static_cast<T>(static_cast<double>(x[i]) + stddev * rng.normal());
}

}  // namespace

DpMode parse_dp_mode(const std::string& name) {
  for (DpMode mode :
       {DpMode::off, DpMode::server_fixed, DpMode::server_adaptive, DpMode::client_fixed, DpMode::client_adaptive})
    if (name == dp_mode_name(mode)) return mode;
  throw Error("unknown privacy mode '" + name +
              "' (off, server_fixed, server_adaptive, client_fixed or client_adaptive)");
}

const char* dp_mode_name(DpMode mode) {
  switch (mode) {
    case DpMode::off:
      return "off";
    case DpMode::server_fixed:
      return "server_fixed";
    case DpMode::server_adaptive:
      return "server_adaptive";
    case DpMode::client_fixed:
      return "client_fixed";
    case DpMode::client_adaptive:
      return "client_adaptive";
  }
  return "?";
}

double global_l2_norm(const NamedTensors& tensors) {
  double sum = 0;
  for (const auto& [name, tensor] : tensors) sum += kernels::sum_squares(tensor);
  return std::sqrt(sum);
}

double clip_to_norm(const NamedTensors& tensors, double clip) {
  if (!(clip > 0) || !std::isfinite(clip))
    throw Error("clip_to_norm: clip = " + number_text(clip) + "; it must be > 0");
  const double norm = global_l2_norm(tensors);
  // A NaN or infinite update has no direction to keep; scaling it would spread NaN.
  if (!std::isfinite(norm))
    throw Error("clip_to_norm: the update's L2 norm is " + number_text(norm) + "; it holds NaN or Inf");
  if (norm > clip)
    for (const auto& [name, tensor] : tensors) kernels::scale(tensor, clip / norm);
  return norm;
}

void add_gaussian_noise(const NamedTensors& tensors, double stddev, Rng& rng) {
  if (!(stddev >= 0) || !std::isfinite(stddev))
    throw Error("add_gaussian_noise: stddev = " + number_text(stddev) + "; it must be >= 0");
  // Element by element in tensor order (one normal each, whatever the stddev): a seed fixes the
  // noise bit for bit, and the stream advances by the same amount every time.
  for (const auto& [name, tensor] : tensors) {
    require_cpu_float("add_gaussian_noise", name, tensor);
    if (tensor.dtype() == DType::f32)
      add_noise<float>(tensor, stddev, rng);
    else
      add_noise<double>(tensor, stddev, rng);
  }
}

DpAggregator::DpAggregator(const DpOptions& options) : options_(options), clip_norm_(options.clip_norm) {
  validate(options_);
}

double DpAggregator::update_noise_multiplier(int64_t sampled) const {
  const double z = options_.noise_multiplier;
  if (!is_adaptive(options_.mode) || z == 0) return z;
  if (sampled <= 0)
    throw Error("privacy: update_noise_multiplier needs the number of sampled participants (> 0), got " +
                std::to_string(sampled));
  const double sigma_b = count_stddev(options_, sampled);
  require_count_noise_fits(z, sigma_b, options_.clipped_count_stddev < 0);
  return 1 / std::sqrt(1 / (z * z) - 1 / (4 * sigma_b * sigma_b));
}

// Uniform weights (DP-FedAvg, McMahan et al. 2018): with mean = Σ clipped Δᵢ / m, one
// participant moves the mean by at most C/m, which is what the noise z·C/m is calibrated to.
// Example-weighted means would let a participant with many examples move it further (and the
// counts themselves are private), so num_examples is deliberately ignored here.
NamedTensors DpAggregator::privatize(int64_t round, const NamedTensors& global,
                                     const std::vector<ClientResult>& results,
                                     const std::vector<double>& clipped_bits) {
  const DpMode mode = options_.mode;
  if (mode == DpMode::off) throw Error("privacy: privatize called with mode off; aggregate the results directly");
  if (results.empty()) throw Error("privacy: no client results to privatize");
  if (mode == DpMode::client_adaptive && clipped_bits.size() != results.size())
    throw Error("privacy: client_adaptive needs one clipped bit per result; got " +
                std::to_string(clipped_bits.size()) + " bits for " + std::to_string(results.size()) + " results");
  for (const auto& [name, tensor] : global) require_cpu_float("global parameters", name, tensor);
  for (const ClientResult& result : results) check_result_tensors("privacy", global, result);

  const int64_t m = static_cast<int64_t>(results.size());
  const double z = update_noise_multiplier(m);  // first: a σ_b too small fails before any work
  const double clip = clip_norm_;               // this round's C; an adaptive update comes after

  const ClippedMean clipped = clipped_mean(mode, global, results, clipped_bits, clip);
  const NamedTensors& mean = clipped.mean;

  Rng update_rng = round_rng(options_.seed, round, 0);
  add_gaussian_noise(mean, z * clip / static_cast<double>(m), update_rng);
  if (is_adaptive(mode)) clip_norm_ = next_clip_norm(options_, clip, round, clipped.unclipped, m);
  return apply_update(global, mean);
}

NamedTensors DpAggregator::state() const {
  Tensor clip = Tensor::empty({1}, DType::f64);
  clip.as<double>()[0] = clip_norm_;
  return {{kClipNormState, clip}};
}

void DpAggregator::load_state(const NamedTensors& state) {
  const Tensor* clip = nullptr;
  for (const auto& [name, tensor] : state) {
    if (name != kClipNormState)
      throw Error("privacy state: unexpected tensor '" + name + "' (expected only " + kClipNormState + ")");
    clip = &tensor;
  }
  if (clip == nullptr) throw Error(std::string("privacy state: lacks ") + kClipNormState);
  if (clip->dtype() != DType::f64 || clip->numel() != 1 || clip->device() != Device::cpu)
    throw Error(std::string("privacy state: ") + kClipNormState + " must be a 1-element CPU f64 tensor, got " +
                clip->view().str());
  const double value = clip->as<double>()[0];
  if (!(value > 0) || !std::isfinite(value))
    throw Error(std::string("privacy state: ") + kClipNormState + " = " + number_text(value) + "; it must be > 0");
  clip_norm_ = value;
}

DpStrategy::DpStrategy(std::unique_ptr<Strategy> inner, const DpOptions& options, size_t population)
    : Strategy(inner->name(), inner->sampling()),
      inner_(std::move(inner)),
      mechanism_(options),
      population_(population) {
  if (options.mode == DpMode::off) throw Error("privacy: DpStrategy needs a mode other than off");
  if (population == 0) throw Error("privacy: DpStrategy needs the number of participants (> 0)");
}

std::vector<std::string> DpStrategy::sample(int64_t round, std::vector<std::string> available) {
  std::vector<std::string> sampled = inner_->sample(round, std::move(available));
  sampled_ = sampled.size();
  return sampled;
}

std::map<std::string, ConfigValue> DpStrategy::fit_config(int64_t round) const {
  std::map<std::string, ConfigValue> settings = inner_->fit_config(round);
  if (is_client_mode(options().mode)) settings["clip_norm"] = mechanism_.clip_norm();
  return settings;
}

NamedTensors DpStrategy::aggregate(int64_t round, const NamedTensors& global,
                                   const std::vector<ClientResult>& results) {
  std::vector<double> bits;
  for (const ClientResult& result : results) {
    const auto bit = result.metrics.find("clipped_bit");
    bits.push_back(bit == result.metrics.end() ? 0.0 : bit->second);
  }
  const std::vector<ClientResult> mean = {{"dp-mean", mechanism_.privatize(round, global, results, bits), 1}};
  account(static_cast<double>(sampled_) / static_cast<double>(population_));
  return inner_->aggregate(round, global, mean);
}

void DpStrategy::load_privacy_state(const NamedTensors& mechanism_state, const std::vector<double>& sampling_rates) {
  mechanism_.load_state(mechanism_state);
  accountant_ = RdpAccountant();
  sampling_rates_.clear();
  for (double q : sampling_rates) account(q);
}

// Without noise there is no finite ε to track; the rate is kept all the same (checkpoints).
void DpStrategy::account(double sampling_rate) {
  if (options().noise_multiplier > 0) accountant_.add_steps(sampling_rate, options().noise_multiplier, 1);
  sampling_rates_.push_back(sampling_rate);
}

double DpStrategy::epsilon_spent() const {
  if (options().noise_multiplier == 0) return std::numeric_limits<double>::infinity();
  return accountant_.epsilon(options().delta);
}

bool DpStrategy::budget_exhausted() const {
  if (options().target_epsilon <= 0 || options().noise_multiplier == 0) return false;
  RdpAccountant next = accountant_;
  const double expected_rate = static_cast<double>(inner_->sample_size(population_)) / static_cast<double>(population_);
  next.add_steps(expected_rate, options().noise_multiplier, 1);
  return next.epsilon(options().delta) > options().target_epsilon;
}

}  // namespace fe::fed
