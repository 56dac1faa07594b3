// fed/accountant.cpp — RDP of the Poisson-subsampled Gaussian mechanism and its conversion to
// (ε, δ)-DP, computed the way Opacus (opacus/accountants/analysis/rdp.py) and TF Privacy
// (compute_rdp / get_privacy_spent) do, so that the ε we report matches theirs.
//
// Notation (Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian
// Mechanism", arXiv:1908.10530, Sec. 3): σ is the noise multiplier, q the sampling rate,
// μ0 = N(0, σ²), μ1 = N(1, σ²), μ = (1−q)·μ0 + q·μ1. One step is (α, ε_α)-RDP with
//   ε_α = log(A_α) / (α − 1),   A_α = E_{z∼μ0}[(μ(z)/μ0(z))^α].
// Composition over steps adds ε_α (Mironov 2017, Prop. 1), so we keep one running sum per order.
#include "engine/accountant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <sstream>
#include <string>
#include <utility>

#include "core/error.h"

namespace fe {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kLogZero = -kInf;  // 0 in log space

std::string num(double x) {
  std::ostringstream out;
  out << x;
  return out.str();
}

// ---- log-space arithmetic: A_α is a sum of terms that under- or overflow a double ----

// log(e^a + e^b)
double log_add(double a, double b) {
  if (a < b) std::swap(a, b);
  if (b == kLogZero) return a;
  return a + std::log1p(std::exp(b - a));
}

// log(e^a − e^b) for a ≥ b; the fractional-α series subtracts its negative binomial terms.
double log_sub(double a, double b) {
  if (a < b) {
    throw Error("RdpAccountant: log-space subtraction went negative (log terms " + num(a) + " < " + num(b) +
                "); the fractional-order series is numerically unstable for these parameters");
  }
  if (b == kLogZero) return a;
  if (a == b) return kLogZero;
  const double d = a - b;
  // exp(a) − exp(b) = (exp(a − b) − 1)·exp(b); when exp(d) overflows, log(expm1(d)) = d to double precision.
  return (d > 700 ? d : std::log(std::expm1(d))) + b;
}

// log(erfc(x)), accurate where erfc(x) underflows (x ≳ 26.5). Below x = 20 std::erfc is still
// a normal double with full relative accuracy; beyond, the asymptotic series (u = 1/(2x²))
//   erfc(x) = e^{−x²} / (x√π) · (1 − u + 3u² − 15u³ + 105u⁴ − 945u⁵ + 10395u⁶ − …)
// cut after u⁶ is off by less than 135135·u⁷ < 1e-15 there.
double log_erfc(double x) {
  if (x < 20) return std::log(std::erfc(x));
  const double u = 1.0 / (2 * x * x);
  const double series = 1 - u * (1 - 3 * u * (1 - 5 * u * (1 - 7 * u * (1 - 9 * u * (1 - 11 * u)))));
  return -x * x - std::log(x) - 0.5 * std::log(std::numbers::pi) + std::log(series);
}

// log|C(α, i)| for real α ≥ 0 and integer i ≥ 0 (lgamma returns log|Γ|), and its sign: the product
// Π_{k<i} (α − k)/(k + 1) has one negative factor for each k > α.
double log_abs_binom(double alpha, int64_t i) {
  return std::lgamma(alpha + 1) - std::lgamma(static_cast<double>(i) + 1) -
         std::lgamma(alpha - static_cast<double>(i) + 1);
}
bool binom_negative(double alpha, int64_t i) {
  const int64_t first_negative_k = static_cast<int64_t>(std::floor(alpha)) + 1;  // smallest k > α
  const int64_t negatives = i > first_negative_k ? i - first_negative_k : 0;
  return negatives % 2 == 1;
}

// ---- log A_α for 0 < q < 1 ----

// Integer α (paper Sec. 3.3, the binomial expansion of (1 − q + q·μ1/μ0)^α):
//   A_α = Σ_{i=0}^{α} C(α, i) (1−q)^{α−i} q^i exp((i² − i) / (2σ²)),
// using E_{μ0}[(μ1/μ0)^i] = exp((i² − i)/(2σ²)). All terms are positive.
double log_a_int(double q, double sigma, int64_t alpha) {
  const double log_q = std::log(q), log_1mq = std::log1p(-q);
  double log_a = kLogZero;
  for (int64_t i = 0; i <= alpha; ++i) {
    const double di = static_cast<double>(i);
    const double log_term = log_abs_binom(static_cast<double>(alpha), i) + di * log_q +
                            static_cast<double>(alpha - i) * log_1mq + (di * di - di) / (2 * sigma * sigma);
    log_a = log_add(log_a, log_term);
  }
  return log_a;
}

// Fractional α (paper Sec. 3.3): split the integral at z0, where μ1/μ0 = (1 − q)/q, i.e.
// z0 = σ² log(1/q − 1) + 1/2. On each side one of the two mixture terms dominates, so the
// generalised binomial series of (a + b)^α converges there:
//   A_α = Σ_i C(α, i) [ q^i (1−q)^{α−i} e^{(i²−i)/(2σ²)} · ½ erfc((i − z0)/(√2σ))          (z < z0)
//                     + q^{α−i} (1−q)^i e^{(j²−j)/(2σ²)} · ½ erfc((z0 − j)/(√2σ)) ], j = α − i (z > z0).
// The coefficients alternate in sign once i > α + 1; we sum until both new terms are below e^{-30},
// Opacus' stopping rule.
double log_a_frac(double q, double sigma, double alpha) {
  constexpr double kStopLogTerm = -30;
  constexpr int64_t kMaxTerms = 10'000'000;  // the terms decay polynomially; this is a hang guard
  const double log_q = std::log(q), log_1mq = std::log1p(-q);
  const double z0 = sigma * sigma * std::log(1 / q - 1) + 0.5;
  const double two_var = 2 * sigma * sigma, erfc_scale = std::sqrt(2.0) * sigma;
  double log_a0 = kLogZero, log_a1 = kLogZero;
  for (int64_t i = 0; i < kMaxTerms; ++i) {
    const double di = static_cast<double>(i), j = alpha - di;
    const double log_coef = log_abs_binom(alpha, i);
    const double log_s0 = log_coef + di * log_q + j * log_1mq + (di * di - di) / two_var +
                          std::log(0.5) + log_erfc((di - z0) / erfc_scale);
    const double log_s1 = log_coef + j * log_q + di * log_1mq + (j * j - j) / two_var +
                          std::log(0.5) + log_erfc((z0 - j) / erfc_scale);
    if (binom_negative(alpha, i)) {
      log_a0 = log_sub(log_a0, log_s0);
      log_a1 = log_sub(log_a1, log_s1);
    } else {
      log_a0 = log_add(log_a0, log_s0);
      log_a1 = log_add(log_a1, log_s1);
    }
    if (std::max(log_s0, log_s1) < kStopLogTerm) return log_add(log_a0, log_a1);
  }
  throw Error("RdpAccountant: the series for order " + num(alpha) + " did not converge (q=" + num(q) +
              ", noise_multiplier=" + num(sigma) + ")");
}

// ε_α of one step. q = 1 is the plain Gaussian mechanism, ε_α = α/(2σ²) (Mironov 2017, Prop. 7).
double rdp_one_step(double q, double sigma, double alpha) {
  if (q == 1.0) return alpha / (2 * sigma * sigma);
  const double log_a = std::floor(alpha) == alpha ? log_a_int(q, sigma, static_cast<int64_t>(alpha))
                                                  : log_a_frac(q, sigma, alpha);
  return log_a / (alpha - 1);
}

// Opacus' RDPAccountant.DEFAULT_ALPHAS extended like TF Privacy's grid: 1.1, 1.2, …, 10.9, then
// 12, 13, …, 63, and 128, 256, 512.
std::vector<double> default_orders() {
  std::vector<double> orders;
  for (int x = 1; x < 100; ++x) orders.push_back(1 + x / 10.0);
  for (int a = 12; a < 64; ++a) orders.push_back(a);
  for (double a : {128.0, 256.0, 512.0}) orders.push_back(a);
  return orders;
}

}  // namespace

RdpAccountant::RdpAccountant() : RdpAccountant(default_orders()) {}

RdpAccountant::RdpAccountant(std::vector<double> orders) : orders_(std::move(orders)) {
  if (orders_.empty()) throw Error("RdpAccountant: the list of Rényi orders is empty");
  for (double alpha : orders_) {
    // α = 1 is the KL divergence, which the formulas here (and the ε conversion) divide by α − 1 to avoid.
    if (!(alpha > 1) || !std::isfinite(alpha)) {
      throw Error("RdpAccountant: Rényi order " + num(alpha) + " must be finite and > 1");
    }
  }
  rdp_.assign(orders_.size(), 0.0);
}

void RdpAccountant::add_steps(double sampling_rate, double noise_multiplier, int64_t steps) {
  if (!(sampling_rate > 0 && sampling_rate <= 1)) {
    throw Error("RdpAccountant::add_steps: sampling_rate " + num(sampling_rate) + " must be in (0, 1]");
  }
  if (!(noise_multiplier > 0) || !std::isfinite(noise_multiplier)) {
    throw Error("RdpAccountant::add_steps: noise_multiplier " + num(noise_multiplier) +
                " must be finite and > 0");
  }
  if (steps < 0) throw Error("RdpAccountant::add_steps: steps " + std::to_string(steps) + " must be >= 0");
  if (steps == 0) return;
  for (size_t k = 0; k < orders_.size(); ++k) {
    rdp_[k] += rdp_one_step(sampling_rate, noise_multiplier, orders_[k]) * static_cast<double>(steps);
  }
  steps_ += steps;
}

// Balle et al. 2020 ("Hypothesis Testing Interpretations and Rényi Differential Privacy",
// arXiv:1905.09982, Theorem 21): (α, ρ)-RDP implies (ε, δ)-DP with
//   ε = ρ + log((α − 1)/α) − (log δ + log α)/(α − 1),
// which is Opacus' get_privacy_spent; we take the smallest over the orders, skipping NaN.
double RdpAccountant::epsilon(double delta) const {
  if (!(delta > 0 && delta < 1)) throw Error("RdpAccountant::epsilon: delta " + num(delta) + " must be in (0, 1)");
  // Nothing released yet: no privacy spent (the bound alone would give a small positive ε).
  if (steps_ == 0) return 0;
  double best = kInf;
  for (size_t k = 0; k < orders_.size(); ++k) {
    const double alpha = orders_[k];
    const double eps = rdp_[k] + std::log((alpha - 1) / alpha) - (std::log(delta) + std::log(alpha)) / (alpha - 1);
    if (!std::isnan(eps) && eps < best) best = eps;
  }
  // The bound can dip below zero for tiny ρ and large δ; ε is non-negative (dp_accounting clamps too).
  return std::max(best, 0.0);
}

}  // namespace fe
