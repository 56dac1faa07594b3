// Tests for fed/privacy: clipping, Gaussian noise, DP-FedAvg aggregation and adaptive clipping.
// The statistical checks use fixed seeds and enough samples that a wrong factor (a missing 1/m,
// z instead of z_Δ, the new C instead of the old one) lands many standard errors outside the bound.
#include "fed/privacy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "engine/accountant.h"
#include "kernels/elementwise.h"
#include "tests/test_util.h"

namespace fe::fed {
namespace {

using test::element;

// --- helpers ------------------------------------------------------------------------------------

struct Spec {
  std::string name;
  Shape shape;
  DType dtype;
};

const std::vector<Spec> kMixedSpecs = {{"a", {4, 6}, DType::f32}, {"b", {10}, DType::f64}};

NamedTensors random_tensors(const std::vector<Spec>& specs, Rng& rng, double scale = 1.0) {
  NamedTensors tensors;
  for (const Spec& s : specs) tensors.emplace_back(s.name, test::random_tensor(s.shape, rng, scale, s.dtype));
  return tensors;
}

NamedTensors clone_all(const NamedTensors& tensors) {
  NamedTensors copy;
  for (const auto& [name, t] : tensors) copy.emplace_back(name, t.clone());
  return copy;
}

bool same_bits(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].first != b[i].first || a[i].second.dtype() != b[i].second.dtype() || !(a[i].second.shape() == b[i].second.shape()))
      return false;
    if (std::memcmp(a[i].second.data(), b[i].second.data(), a[i].second.nbytes()) != 0) return false;
  }
  return true;
}

// ‖x‖₂ by plain loops, independent of the kernels the implementation uses.
double norm_of(const NamedTensors& tensors) {
  double sum = 0;
  for (const auto& [name, t] : tensors)
    for (int64_t i = 0; i < t.numel(); ++i) sum += element(t, i) * element(t, i);
  return std::sqrt(sum);
}

// global + Δ with ‖Δ‖ = norm in a random direction, as participant params.
ClientResult result_with_norm(const std::string& id, const NamedTensors& global, double norm, Rng& rng, int64_t examples = 1) {
  NamedTensors direction;
  for (const auto& [name, x] : global) direction.emplace_back(name, test::random_tensor(x.shape(), rng, 1.0, DType::f64));
  const double scale = norm / norm_of(direction);
  NamedTensors params;
  for (size_t t = 0; t < global.size(); ++t) {
    const Tensor& x = global[t].second;
    Tensor p = Tensor::empty(x.shape(), DType::f64);
    for (int64_t i = 0; i < x.numel(); ++i) p.as<double>()[i] = element(x, i) + scale * element(direction[t].second, i);
    params.emplace_back(global[t].first, p.to(x.dtype()));
  }
  return ClientResult{id, params, examples};
}

// The reference DP-FedAvg mean update, in double: (1/m)·Σ Δᵢ·min(1, C/‖Δᵢ‖).
std::vector<std::vector<double>> clipped_mean_update(const NamedTensors& global, const std::vector<ClientResult>& results,
                                                     double clip) {
  std::vector<std::vector<double>> mean;
  for (const auto& [name, x] : global) mean.emplace_back(static_cast<size_t>(x.numel()), 0.0);
  for (const ClientResult& r : results) {
    double sum = 0;
    for (size_t t = 0; t < global.size(); ++t)
      for (int64_t i = 0; i < global[t].second.numel(); ++i) {
        const double d = element(r.params[t].second, i) - element(global[t].second, i);
        sum += d * d;
      }
    const double factor = std::min(1.0, clip / std::sqrt(sum)) / static_cast<double>(results.size());
    for (size_t t = 0; t < global.size(); ++t)
      for (int64_t i = 0; i < global[t].second.numel(); ++i)
        mean[t][i] += factor * (element(r.params[t].second, i) - element(global[t].second, i));
  }
  return mean;
}

DpOptions options_for(DpMode mode, double z, double clip) {
  DpOptions o;
  o.mode = mode;
  o.noise_multiplier = z;
  o.clip_norm = clip;
  o.seed = 1234;
  return o;
}

struct Moments {
  double mean, stddev;
};

Moments moments_of(const std::vector<double>& x) {
  double sum = 0, sum_sq = 0;
  for (double v : x) sum += v;
  const double mean = sum / static_cast<double>(x.size());
  for (double v : x) sum_sq += (v - mean) * (v - mean);
  return {mean, std::sqrt(sum_sq / static_cast<double>(x.size() - 1))};
}

void expect_error_mentions(const std::function<void()>& call, const std::string& text) {
  try {
    call();
    ADD_FAILURE() << "expected an Error mentioning '" << text << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

// --- modes --------------------------------------------------------------------------------------

TEST(DpMode, NamesRoundTripAndUnknownNamesListTheValidOnes) {
  for (DpMode mode : {DpMode::off, DpMode::server_fixed, DpMode::server_adaptive, DpMode::client_fixed, DpMode::client_adaptive})
    EXPECT_EQ(parse_dp_mode(dp_mode_name(mode)), mode);
  expect_error_mentions([] { parse_dp_mode("server"); }, "server_fixed, server_adaptive, client_fixed or client_adaptive");
}

// --- clipping -----------------------------------------------------------------------------------

TEST(ClipToNorm, BoundsTheNormKeepsTheDirectionAndLeavesSmallUpdatesAlone) {
  Rng rng(1);
  const double clip = 1.0;
  int clipped = 0, untouched = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const double target = std::exp(rng.uniform(std::log(0.01), std::log(100.0)));
    NamedTensors x = random_tensors(kMixedSpecs, rng);
    const double to_target = target / norm_of(x);
    for (const auto& [name, t] : x) kernels::scale(t, to_target);
    const NamedTensors before = clone_all(x);
    const double norm_before = norm_of(before);

    const double returned = clip_to_norm(x, clip);
    EXPECT_NEAR(returned, norm_before, 1e-12 * norm_before);
    EXPECT_LE(norm_of(x), clip * (1 + 1e-6));  // f32 rounding only
    if (norm_before <= clip) {
      EXPECT_TRUE(same_bits(x, before)) << "an update inside the ball must not change";
      ++untouched;
      continue;
    }
    ++clipped;
    EXPECT_NEAR(norm_of(x), clip, 1e-6) << "clipped onto the sphere, not inside it";
    // Same direction: every element is the original times one factor C/‖x‖.
    const double factor = clip / norm_before;
    for (size_t t = 0; t < x.size(); ++t)
      for (int64_t i = 0; i < x[t].second.numel(); ++i)
        ASSERT_NEAR(element(x[t].second, i), factor * element(before[t].second, i), 1e-6 * (std::abs(factor * element(before[t].second, i)) + 1e-30) + 1e-9);
  }
  EXPECT_GT(clipped, 50);
  EXPECT_GT(untouched, 50);
}

TEST(ClipToNorm, RejectsANonPositiveClipAndNonFiniteUpdates) {
  Rng rng(2);
  NamedTensors x = random_tensors(kMixedSpecs, rng);
  EXPECT_THROW(clip_to_norm(x, 0.0), Error);
  EXPECT_THROW(clip_to_norm(x, -1.0), Error);
  x[1].second.as<double>()[3] = std::nan("");
  EXPECT_THROW(clip_to_norm(x, 1.0), Error);
}

TEST(GlobalL2Norm, SumsOverEveryTensor) {
  Tensor a = Tensor::zeros({2}, DType::f32), b = Tensor::zeros({1}, DType::f64);
  a.as<float>()[0] = 3;
  b.as<double>()[0] = 4;
  EXPECT_DOUBLE_EQ(global_l2_norm({{"a", a}, {"b", b}}), 5.0);
}

// --- noise --------------------------------------------------------------------------------------

// Checks that x − base looks like N(0, σ²): stddev within 1%, mean within 4 standard errors, and
// the share inside ±σ (0.6827 for a Gaussian, 0.577 for a uniform of the same variance).
void expect_gaussian(const std::vector<double>& noise, double sigma) {
  const double n = static_cast<double>(noise.size());
  const Moments m = moments_of(noise);
  EXPECT_NEAR(m.stddev, sigma, 0.01 * sigma);
  EXPECT_NEAR(m.mean, 0.0, 4 * sigma / std::sqrt(n));
  double inside = 0;
  for (double v : noise) inside += std::abs(v) < sigma ? 1 : 0;
  const double p = 0.682689492;
  EXPECT_NEAR(inside / n, p, 4 * std::sqrt(p * (1 - p) / n));
}

TEST(AddGaussianNoise, HasTheConfiguredStddevAndZeroMean) {
  const double sigma = 0.37;
  Rng rng(3);
  // f64: 10^6 elements added onto a nonzero base (the noise adds, it does not replace).
  Tensor big = Tensor::empty({1000, 1000}, DType::f64);
  kernels::fill(big, 3.0);
  add_gaussian_noise({{"w", big}}, sigma, rng);
  std::vector<double> noise(static_cast<size_t>(big.numel()));
  for (int64_t i = 0; i < big.numel(); ++i) noise[i] = big.as<double>()[i] - 3.0;
  expect_gaussian(noise, sigma);

  // f32 and several tensors: the same statistics.
  Tensor a = Tensor::zeros({300, 1000}, DType::f32), b = Tensor::zeros({200, 1000}, DType::f32);
  add_gaussian_noise({{"a", a}, {"b", b}}, sigma, rng);
  noise.clear();
  for (const Tensor& t : {a, b})
    for (int64_t i = 0; i < t.numel(); ++i) noise.push_back(t.as<float>()[i]);
  expect_gaussian(noise, sigma);
}

TEST(AddGaussianNoise, TheSameSeedGivesTheSameBits) {
  Rng data(4);
  const NamedTensors base = random_tensors(kMixedSpecs, data);
  NamedTensors x = clone_all(base), y = clone_all(base), z = clone_all(base);
  Rng r1(99), r2(99), r3(100);
  add_gaussian_noise(x, 0.5, r1);
  add_gaussian_noise(y, 0.5, r2);
  add_gaussian_noise(z, 0.5, r3);
  EXPECT_TRUE(same_bits(x, y));
  EXPECT_FALSE(same_bits(x, z));
  EXPECT_FALSE(same_bits(x, base));
  EXPECT_THROW(add_gaussian_noise(x, -1.0, r1), Error);
}

// --- privatize ----------------------------------------------------------------------------------

// z = 0 leaves exactly (1/m)·Σ clip(Δᵢ), computed here independently. Server modes get raw
// updates (some larger than C); client modes get updates their participants clipped already.
void expect_noiseless_mean(DpMode mode, const std::vector<double>& norms) {
  Rng rng(5);
  const NamedTensors global = random_tensors(kMixedSpecs, rng);
  std::vector<ClientResult> results;
  for (size_t i = 0; i < norms.size(); ++i)  // example counts differ: DP-FedAvg weighs participants equally anyway
    results.push_back(result_with_norm(test::numbered("c", i), global, norms[i], rng, 1 + 100 * static_cast<int64_t>(i)));
  const NamedTensors global_before = clone_all(global);
  std::vector<NamedTensors> params_before;
  for (const ClientResult& r : results) params_before.push_back(clone_all(r.params));

  const double clip = 0.5;
  DpAggregator dp(options_for(mode, 0.0, clip));
  const NamedTensors out = dp.privatize(1, global, results, {});
  const auto update = clipped_mean_update(global, results, clip);
  ASSERT_EQ(out.size(), global.size());
  for (size_t t = 0; t < global.size(); ++t) {
    EXPECT_EQ(out[t].first, global[t].first);
    EXPECT_EQ(out[t].second.dtype(), global[t].second.dtype());
    EXPECT_TRUE(out[t].second.shape() == global[t].second.shape());
    const double tolerance = global[t].second.dtype() == DType::f32 ? 1e-6 : 1e-14;
    for (int64_t i = 0; i < global[t].second.numel(); ++i) {
      const double expected = element(global[t].second, i) + update[t][i];
      EXPECT_NEAR(element(out[t].second, i), expected, tolerance * (1 + std::abs(expected))) << dp_mode_name(mode);
    }
  }
  EXPECT_EQ(dp.clip_norm(), clip) << "fixed modes keep C";
  EXPECT_TRUE(same_bits(global, global_before)) << "the global parameters were modified";
  for (size_t i = 0; i < results.size(); ++i) EXPECT_TRUE(same_bits(results[i].params, params_before[i])) << "result " << i << " was modified";
}

TEST(DpAggregator, WithoutNoiseIsThePlainMeanOfClippedDeltasAndLeavesInputsAlone) {
  expect_noiseless_mean(DpMode::server_fixed, {0.1, 0.4, 0.6, 2.0, 10.0});
  expect_noiseless_mean(DpMode::client_fixed, {0.1, 0.2, 0.3, 0.45, 0.49});
}

// Collects (output − noiseless output) of every element over many rounds.
TEST(DpAggregator, NoiseStddevIsZTimesCOverM) {
  Rng rng(6);
  const double z = 1.5, clip = 2.0;
  const Tensor zeros = Tensor::zeros({1000}, DType::f64);
  const NamedTensors global = {{"w", zeros}};
  std::vector<ClientResult> results;
  for (double norm : {0.5, 1.5, 3.0, 8.0}) results.push_back(result_with_norm("c", global, norm, rng));
  const auto noiseless = clipped_mean_update(global, results, clip);

  DpAggregator dp(options_for(DpMode::server_fixed, z, clip));
  std::vector<double> noise;
  for (int64_t round = 1; round <= 200; ++round) {
    const NamedTensors out = dp.privatize(round, global, results, {});
    for (int64_t i = 0; i < 1000; ++i) noise.push_back(out[0].second.as<double>()[i] - noiseless[0][i]);
  }
  const double expected = z * clip / 4;
  const Moments m = moments_of(noise);
  EXPECT_NEAR(m.stddev, expected, 0.03 * expected);
  EXPECT_NEAR(m.mean, 0.0, 4 * expected / std::sqrt(static_cast<double>(noise.size())));

  // A resumed run (a fresh aggregator, same seed) draws the same noise for the same round.
  DpAggregator again(options_for(DpMode::server_fixed, z, clip));
  EXPECT_TRUE(same_bits(again.privatize(7, global, results, {}), dp.privatize(7, global, results, {})));
  EXPECT_FALSE(same_bits(again.privatize(7, global, results, {}), dp.privatize(8, global, results, {})));
}

// Adaptive: the noise uses z_Δ (> z) and the C of the round, not the C it sets for the next one.
TEST(DpAggregator, AdaptiveNoiseUsesZDeltaAndTheRoundsOwnClipNorm) {
  DpOptions o = options_for(DpMode::server_adaptive, 1.0, 1.0);
  o.clipped_count_stddev = 1.0;  // z_Δ = (1 − 1/4)^(−1/2) ≈ 1.155
  o.clip_learning_rate = 0.2;    // every update is unclipped: C shrinks ~10% a round
  DpAggregator dp(o);
  const NamedTensors global = {{"w", Tensor::zeros({500}, DType::f64)}};
  const std::vector<ClientResult> results(4, ClientResult{"same", clone_all(global), 1});  // Δ = 0
  const double z_delta = dp.update_noise_multiplier(4);
  std::vector<double> normalized;
  double shrink = 0;
  for (int64_t round = 1; round <= 200; ++round) {
    const double clip = dp.clip_norm();
    const NamedTensors out = dp.privatize(round, global, results, {});
    for (int64_t i = 0; i < 500; ++i) normalized.push_back(out[0].second.as<double>()[i] / (clip / 4));
    shrink += std::log(clip / dp.clip_norm());
  }
  EXPECT_NEAR(moments_of(normalized).stddev, z_delta, 0.03 * z_delta);
  EXPECT_NEAR(shrink / 200, 0.2 * (1 - 0.5), 0.02) << "E[log C_t − log C_t+1] = η·(1 − γ) when no update is clipped";
}

// The clipped-count noise: with every update unclipped (Σbᵢ = m known), each round's step
// log(C_old/C_new) = η·(b̃ − γ) reveals b̃, and m·b̃ − m must be N(0, σ_b²) with σ_b = m/20.
TEST(DpAggregator, ClippedCountNoiseHasStddevMOver20ByDefault) {
  const int m = 40;
  DpOptions o = options_for(DpMode::server_adaptive, 1.0, 1.0);
  o.clip_learning_rate = 0.1;
  DpAggregator dp(o);
  const NamedTensors global = {{"w", Tensor::zeros({1}, DType::f64)}};
  const std::vector<ClientResult> results(m, ClientResult{"same", clone_all(global), 1});  // Δ = 0
  std::vector<double> count_noise;
  for (int64_t round = 1; round <= 2000; ++round) {
    const double before = dp.clip_norm();
    dp.privatize(round, global, results, {});
    const double noisy_fraction = o.target_quantile + std::log(before / dp.clip_norm()) / o.clip_learning_rate;
    count_noise.push_back(m * noisy_fraction - m);
  }
  const double sigma_b = m / 20.0;
  const Moments noise = moments_of(count_noise);
  EXPECT_NEAR(noise.stddev, sigma_b, 0.07 * sigma_b);
  EXPECT_NEAR(noise.mean, 0.0, 4 * sigma_b / std::sqrt(2000.0));
}

// Feeds m = 100 updates a round with norms from a known distribution; C must settle at the
// distribution's γ-quantile. log C is averaged over the settled rounds (C itself jitters by a few
// % from the count noise σ_b = m/20).
double settled_clip_norm(double quantile, double start, const std::function<double(Rng&)>& draw_norm, uint64_t seed) {
  DpOptions o = options_for(DpMode::server_adaptive, 1.0, start);
  o.target_quantile = quantile;
  o.clip_learning_rate = 0.2;
  o.seed = seed;
  DpAggregator dp(o);
  const int m = 100;
  const NamedTensors global = {{"w", Tensor::zeros({4}, DType::f64)}};
  std::vector<ClientResult> results;
  for (int i = 0; i < m; ++i) results.push_back(ClientResult{test::numbered("c", i), clone_all(global), 1});
  Rng rng(seed + 1);
  double log_sum = 0;
  int counted = 0;
  for (int64_t round = 1; round <= 1000; ++round) {
    for (ClientResult& r : results) {  // a fresh update of norm ~ the distribution, random direction
      double* d = r.params[0].second.as<double>();
      double sq = 0;
      for (int i = 0; i < 4; ++i) {
        d[i] = rng.normal();
        sq += d[i] * d[i];
      }
      const double scale = draw_norm(rng) / std::sqrt(sq);
      for (int i = 0; i < 4; ++i) d[i] *= scale;
    }
    dp.privatize(round, global, results, {});
    if (round > 200) {
      log_sum += std::log(dp.clip_norm());
      ++counted;
    }
  }
  return std::exp(log_sum / counted);
}

TEST(DpAggregator, AdaptiveClipNormConvergesToTheTargetQuantile) {
  const auto uniform_0_10 = [](Rng& rng) { return rng.uniform(0, 10); };
  const auto half_normal_times_2 = [](Rng& rng) { return 2 * std::abs(rng.normal()); };
  // Uniform on [0, 10]: the γ-quantile is 10γ. 2·|N(0, 1)|: 2·Φ⁻¹((1 + γ)/2).
  // Starting below the quantile for one, above it for the other: C must move both ways.
  EXPECT_NEAR(settled_clip_norm(0.5, 1.0, uniform_0_10, 10) / 5.0, 1.0, 0.03);
  EXPECT_NEAR(settled_clip_norm(0.9, 1.0, uniform_0_10, 20) / 9.0, 1.0, 0.03);
  EXPECT_NEAR(settled_clip_norm(0.5, 20.0, half_normal_times_2, 30) / (2 * 0.6744897502), 1.0, 0.03);
  EXPECT_NEAR(settled_clip_norm(0.9, 20.0, half_normal_times_2, 40) / (2 * 1.6448536270), 1.0, 0.03);
}

TEST(DpAggregator, UpdateNoiseMultiplierFollowsAndrewEtAlTheorem1) {
  DpOptions o = options_for(DpMode::server_adaptive, 1.3, 1.0);
  o.clipped_count_stddev = 2.0;
  EXPECT_DOUBLE_EQ(DpAggregator(o).update_noise_multiplier(7), std::pow(std::pow(1.3, -2) - std::pow(4.0, -2), -0.5));
  o.mode = DpMode::client_adaptive;
  o.clipped_count_stddev = -1;  // σ_b = m/20 = 5 for m = 100
  EXPECT_DOUBLE_EQ(DpAggregator(o).update_noise_multiplier(100), std::pow(std::pow(1.3, -2) - std::pow(10.0, -2), -0.5));
  for (DpMode fixed : {DpMode::server_fixed, DpMode::client_fixed}) {
    o.mode = fixed;
    EXPECT_EQ(DpAggregator(o).update_noise_multiplier(3), 1.3);
    EXPECT_EQ(DpAggregator(o).update_noise_multiplier(1000), 1.3);
  }
  o = options_for(DpMode::server_adaptive, 0.0, 1.0);
  EXPECT_EQ(DpAggregator(o).update_noise_multiplier(5), 0.0);

  // σ_b ≤ z/2 leaves nothing for the update: an Error that says so.
  o = options_for(DpMode::server_adaptive, 1.0, 1.0);
  o.clipped_count_stddev = 0.4;
  expect_error_mentions([&] { DpAggregator{o}; }, "too small");
  o.clipped_count_stddev = -1;
  DpAggregator defaulted(o);
  expect_error_mentions([&] { defaulted.update_noise_multiplier(10); }, "clipped_count_stddev");  // m/20 = 0.5 = z/2
  Rng rng(7);
  const NamedTensors global = {{"w", Tensor::zeros({3}, DType::f32)}};
  const std::vector<ClientResult> ten(10, result_with_norm("c", global, 1.0, rng));
  expect_error_mentions([&] { defaulted.privatize(1, global, ten, {}); }, "too small");
  EXPECT_GT(defaulted.update_noise_multiplier(11), 1.0);
}

TEST(DpAggregator, ClientModesStillClipOversizedUpdates) {
  Rng rng(8);
  const NamedTensors global = random_tensors(kMixedSpecs, rng);
  for (DpMode mode : {DpMode::client_fixed, DpMode::client_adaptive}) {
    DpOptions o = options_for(mode, 0.0, 1.0);
    o.clipped_count_stddev = 0;
    DpAggregator dp(o);
    const ClientResult cheat = result_with_norm("cheat", global, 50.0, rng);
    const NamedTensors out = dp.privatize(1, global, {cheat}, {1.0});
    NamedTensors delta;
    for (size_t t = 0; t < out.size(); ++t) {
      Tensor d = Tensor::empty(out[t].second.shape(), DType::f64);
      for (int64_t i = 0; i < d.numel(); ++i) d.as<double>()[i] = element(out[t].second, i) - element(global[t].second, i);
      delta.emplace_back(out[t].first, d);
    }
    EXPECT_NEAR(norm_of(delta), 1.0, 1e-5) << dp_mode_name(mode) << ": clipped to C, not trusted";
  }
}

TEST(DpAggregator, ClientAdaptiveTakesTheReportedBits) {
  Rng rng(9);
  const NamedTensors global = {{"w", Tensor::zeros({6}, DType::f64)}};
  std::vector<ClientResult> results;
  for (int i = 0; i < 4; ++i) results.push_back(result_with_norm(test::numbered("c", i), global, 0.2, rng));
  DpOptions o = options_for(DpMode::client_adaptive, 0.0, 1.0);  // no noise: the C step is exact
  o.clipped_count_stddev = 0;
  o.clip_learning_rate = 0.5;
  o.target_quantile = 0.5;
  DpAggregator client(o);
  client.privatize(1, global, results, {1, 1, 1, 0});  // b̃ = 0.75, though every update is small
  EXPECT_NEAR(client.clip_norm(), std::exp(-0.5 * 0.25), 1e-15);
  client.privatize(2, global, results, {0, 0, 0, 0});
  EXPECT_NEAR(client.clip_norm(), std::exp(-0.5 * 0.25) * std::exp(0.5 * 0.5), 1e-15);

  // The server mode measures the bits itself: all four updates are inside C.
  o.mode = DpMode::server_adaptive;
  DpAggregator server(o);
  server.privatize(1, global, results, {0, 0, 0, 0});
  EXPECT_NEAR(server.clip_norm(), std::exp(-0.5 * 0.5), 1e-15);

  expect_error_mentions([&] { client.privatize(3, global, results, {1, 1}); }, "clipped bit");
  expect_error_mentions([&] { client.privatize(3, global, results, {1, 0.5, 1, 1}); }, "c1");
}

TEST(DpAggregator, StateRoundTripsAndTheRestoredRunContinuesBitIdentically) {
  Rng rng(10);
  const NamedTensors global = random_tensors(kMixedSpecs, rng);
  std::vector<ClientResult> results;
  for (int i = 0; i < 20; ++i) results.push_back(result_with_norm(test::numbered("c", i), global, rng.uniform(0, 2), rng));
  DpAggregator a(options_for(DpMode::server_adaptive, 1.0, 0.3));
  for (int64_t round = 1; round <= 3; ++round) a.privatize(round, global, results, {});
  ASSERT_NE(a.clip_norm(), 0.3);

  const NamedTensors state = a.state();
  ASSERT_EQ(state.size(), 1u);
  EXPECT_EQ(state[0].first, "dp.clip_norm");
  EXPECT_EQ(state[0].second.dtype(), DType::f64);
  EXPECT_EQ(state[0].second.numel(), 1);
  DpAggregator b(options_for(DpMode::server_adaptive, 1.0, 0.3));
  b.load_state(state);
  EXPECT_EQ(b.clip_norm(), a.clip_norm());
  EXPECT_TRUE(same_bits(a.privatize(4, global, results, {}), b.privatize(4, global, results, {})));
  EXPECT_EQ(a.clip_norm(), b.clip_norm());

  Tensor negative = Tensor::empty({1}, DType::f64);
  negative.as<double>()[0] = -1;
  EXPECT_THROW(b.load_state({}), Error);
  EXPECT_THROW(b.load_state({{"dp.clip_norm", Tensor::zeros({1}, DType::f32)}}), Error);
  EXPECT_THROW(b.load_state({{"dp.clip_norm", negative}}), Error);
  EXPECT_THROW(b.load_state({{"dp.clip_norm", state[0].second}, {"dp.other", state[0].second}}), Error);
}

TEST(DpAggregator, InvalidOptionsNameTheOption) {
  const std::vector<std::pair<std::string, std::function<void(DpOptions&)>>> cases = {
      {"noise_multiplier", [](DpOptions& o) { o.noise_multiplier = -0.1; }},
      {"noise_multiplier", [](DpOptions& o) { o.noise_multiplier = std::nan(""); }},
      {"clip_norm", [](DpOptions& o) { o.clip_norm = 0; }},
      {"clip_norm", [](DpOptions& o) { o.clip_norm = -2; }},
      {"target_quantile", [](DpOptions& o) { o.target_quantile = 0; }},
      {"target_quantile", [](DpOptions& o) { o.target_quantile = 1; }},
      {"clip_learning_rate", [](DpOptions& o) { o.clip_learning_rate = -0.5; }},
      {"delta", [](DpOptions& o) { o.delta = 0; }},
      {"delta", [](DpOptions& o) { o.delta = 1; }},
      {"target_epsilon", [](DpOptions& o) { o.target_epsilon = -1; }},
      {"clipped_count_stddev", [](DpOptions& o) { o.clipped_count_stddev = 0.1; }},  // adaptive, z = 1
  };
  for (const auto& [option, spoil] : cases) {
    DpOptions o = options_for(DpMode::server_adaptive, 1.0, 1.0);
    spoil(o);
    expect_error_mentions([&] { DpAggregator{o}; }, option);
  }
}

TEST(DpAggregator, RejectsMismatchedResultsAndModeOff) {
  Rng rng(11);
  const NamedTensors global = random_tensors(kMixedSpecs, rng);
  DpAggregator dp(options_for(DpMode::server_fixed, 1.0, 1.0));
  EXPECT_THROW(dp.privatize(1, global, {}, {}), Error);
  ClientResult renamed = result_with_norm("bob", global, 1.0, rng);
  renamed.params[1].first = "c";
  expect_error_mentions([&] { dp.privatize(1, global, {renamed}, {}); }, "bob");
  ClientResult reshaped = result_with_norm("eve", global, 1.0, rng);
  reshaped.params[0].second = Tensor::zeros({6, 4}, DType::f32);
  expect_error_mentions([&] { dp.privatize(1, global, {reshaped}, {}); }, "eve");
  DpAggregator off(options_for(DpMode::off, 1.0, 1.0));
  EXPECT_THROW(off.privatize(1, global, {result_with_norm("c", global, 1.0, rng)}, {}), Error);
}

// --- DpStrategy ---------------------------------------------------------------------------------

std::vector<std::string> participant_names(int n) {
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) names.push_back(test::numbered("p", i));
  return names;
}

// The wrapper against its parts composed by hand: the mechanism's noisy mean, given to the wrapped
// strategy as one result, and one accountant step at rate (sampled / population) with z.
TEST(DpStrategy, PrivatizesThenAggregatesWithTheWrappedStrategyAndAccountsTheRound) {
  Rng rng(9);
  const NamedTensors global = random_tensors(kMixedSpecs, rng);
  std::vector<ClientResult> results;
  for (int i = 0; i < 4; ++i) results.push_back(result_with_norm(test::numbered("c", i), global, 0.5 + i, rng));
  DpOptions options = options_for(DpMode::server_adaptive, 1.0, 1.0);
  options.clipped_count_stddev = 1;  // above z/2 for 4 results
  const StrategyOptions fedadam{.name = "fedadam", .sampling = {.fraction = 0.5, .min_clients = 2, .seed = 3}};

  DpStrategy wrapped(make_strategy(fedadam), options, 8);
  EXPECT_EQ(wrapped.name(), "fedadam");
  const std::vector<std::string> sampled = wrapped.sample(1, participant_names(8));
  EXPECT_EQ(sampled, make_strategy(fedadam)->sample(1, participant_names(8)));
  ASSERT_EQ(sampled.size(), 4u);
  const NamedTensors got = wrapped.aggregate(1, global, results);

  DpAggregator mechanism(options);
  const std::unique_ptr<Strategy> inner = make_strategy(fedadam);
  const NamedTensors expected = inner->aggregate(1, global, {{"dp-mean", mechanism.privatize(1, global, results, {}), 1}});
  ASSERT_EQ(got.size(), expected.size());
  for (size_t t = 0; t < got.size(); ++t) {
    ASSERT_EQ(got[t].second.nbytes(), expected[t].second.nbytes());
    EXPECT_EQ(std::memcmp(got[t].second.data(), expected[t].second.data(), got[t].second.nbytes()), 0) << got[t].first;
  }
  EXPECT_EQ(wrapped.mechanism().clip_norm(), mechanism.clip_norm());  // the adaptive C moved alike
  EXPECT_EQ(wrapped.sampling_rates(), std::vector<double>{0.5});
  RdpAccountant accountant;
  accountant.add_steps(0.5, options.noise_multiplier, 1);
  EXPECT_DOUBLE_EQ(wrapped.epsilon_spent(), accountant.epsilon(options.delta));
  // The checkpointed strategy state is the wrapped strategy's alone.
  EXPECT_EQ(wrapped.state().size(), inner->state().size());
}

TEST(DpStrategy, ClientModesPushTheClipNormAndTakeEachResultsClippedBit) {
  Rng rng(10);
  const NamedTensors global = random_tensors(kMixedSpecs, rng);
  DpStrategy fixed(make_strategy({.name = "fedprox", .proximal_mu = 0.25}), options_for(DpMode::client_fixed, 0, 0.7), 4);
  const auto settings = fixed.fit_config(1);
  EXPECT_EQ(std::get<double>(settings.at("clip_norm")), 0.7);
  EXPECT_EQ(std::get<double>(settings.at("proximal_mu")), 0.25);
  DpStrategy server(make_strategy({.name = "fedavg"}), options_for(DpMode::server_fixed, 0, 0.7), 4);
  EXPECT_FALSE(server.fit_config(1).count("clip_norm"));

  std::vector<ClientResult> results;
  for (int i = 0; i < 4; ++i) results.push_back(result_with_norm(test::numbered("c", i), global, 0.2, rng));
  const std::vector<double> bits = {1, 0, 0, 1};
  for (size_t i = 0; i < results.size(); ++i) results[i].metrics["clipped_bit"] = bits[i];
  const DpOptions adaptive = options_for(DpMode::client_adaptive, 0.0, 1.0);
  DpStrategy wrapped(make_strategy({.name = "fedavg"}), adaptive, 4);
  wrapped.sample(1, participant_names(4));
  wrapped.aggregate(1, global, results);
  DpAggregator mechanism(adaptive);
  mechanism.privatize(1, global, results, bits);
  EXPECT_EQ(wrapped.mechanism().clip_norm(), mechanism.clip_norm());
  EXPECT_EQ(wrapped.sampling_rates(), std::vector<double>{1.0});
  EXPECT_TRUE(std::isinf(wrapped.epsilon_spent()));  // no noise, no finite ε
}

TEST(DpStrategy, TheBudgetRunsOutBeforeARoundWouldExceedTheTargetEpsilon) {
  DpOptions options = options_for(DpMode::server_fixed, 1.0, 1.0);
  options.target_epsilon = 10;
  DpStrategy wrapped(make_strategy({.name = "fedavg", .sampling = {.fraction = 0.5, .min_clients = 1}}), options, 8);
  RdpAccountant accountant;
  std::vector<double> rates;
  int rounds = 0;
  for (; rounds < 1000; ++rounds) {  // the rate of a round is 4 of 8 participants
    RdpAccountant next = accountant;
    next.add_steps(0.5, 1.0, 1);
    EXPECT_EQ(wrapped.budget_exhausted(), next.epsilon(options.delta) > 10) << rounds;
    if (next.epsilon(options.delta) > 10) break;
    accountant = next;
    rates.push_back(0.5);
    wrapped.load_privacy_state(wrapped.mechanism().state(), rates);
  }
  EXPECT_GT(rounds, 0);
  EXPECT_DOUBLE_EQ(wrapped.epsilon_spent(), accountant.epsilon(options.delta));
}

}  // namespace
}  // namespace fe::fed
