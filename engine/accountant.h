// engine/accountant.h — privacy accounting: Rényi DP of the (Poisson-)subsampled Gaussian mechanism
// (Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism"),
// composed over steps and converted to (ε, δ)-DP, as Opacus' and TF Privacy's RDP accountants do.
#pragma once

#include <cstdint>
#include <vector>

namespace fe {

class RdpAccountant {
 public:
  // The Rényi orders α to track; the default is Opacus' grid (1.1, 1.2, …, 10.9, 12, …, 63, 128, 256, 512).
  RdpAccountant();
  explicit RdpAccountant(std::vector<double> orders);

  // `steps` applications of the Gaussian mechanism with noise multiplier z (noise stddev / L2
  // sensitivity) on a Poisson sample of rate q ∈ (0, 1].
  void add_steps(double sampling_rate, double noise_multiplier, int64_t steps);
  // The smallest ε over the orders for this δ (Balle et al. 2020's conversion, as Opacus).
  double epsilon(double delta) const;
  int64_t steps() const { return steps_; }

 private:
  std::vector<double> orders_;
  std::vector<double> rdp_;  // accumulated RDP per order
  int64_t steps_ = 0;
};

}  // namespace fe
