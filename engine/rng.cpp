#include "engine/rng.h"

#include <cmath>
#include <numbers>
#include <vector>

#include "kernels/elementwise.h"

namespace fe {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Draws in double, then converts into the tensor's dtype through the one conversion routine.
template <class Draw>
void fill_with(const View& v, Draw&& draw) {
  std::vector<double> values(v.numel());
  for (double& x : values) x = draw();
  kernels::convert(v, View{values.data(), DType::f64, v.shape, Device::cpu});
}

}  // namespace

uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t state = seed;
  uint64_t mixed = splitmix64(state);
  state = mixed ^ stream;
  mixed = splitmix64(state);
  state = mixed ^ index;
  return splitmix64(state);
}

uint64_t hash_name(std::string_view name) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : name) hash = (hash ^ c) * 0x100000001b3ull;
  return hash;
}

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return (next_u64() >> 11) * 0x1.0p-53; }

double Rng::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_normal_;
  }
  const double u1 = 1.0 - uniform();  // (0, 1]: log stays finite
  const double u2 = uniform();
  const double radius = std::sqrt(-2.0 * std::log(u1));
  spare_normal_ = radius * std::sin(2 * std::numbers::pi * u2);
  has_spare_ = true;
  return radius * std::cos(2 * std::numbers::pi * u2);
}

void Rng::fill_uniform(const View& v, double lo, double hi) {
  fill_with(v, [&] { return uniform(lo, hi); });
}

void Rng::fill_normal(const View& v, double mean, double stddev) {
  fill_with(v, [&] { return mean + stddev * normal(); });
}

}  // namespace fe
