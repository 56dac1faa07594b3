// engine/rng.h — a seeded random generator whose streams are identical on every platform.
//
// std::normal_distribution differs between standard libraries, so weights initialised from a seed
// would differ too; this generator (xoshiro256** seeded through splitmix64, Box–Muller normals)
// gives the same numbers everywhere.
#pragma once

#include <cstdint>
#include <string_view>

#include "kernels/view.h"

namespace fe {

// A seed for one stream of a run, e.g. (run seed, participant, round): well mixed, so nearby
// inputs give unrelated streams (seed·k + i would make neighbouring streams overlap).
uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t index = 0);
// A stable 64-bit hash of a name (FNV-1a), for deriving per-participant streams.
uint64_t hash_name(std::string_view name);

class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next_u64();
  double uniform();                       // [0, 1)
  double uniform(double lo, double hi);   // [lo, hi)
  double normal();                        // N(0, 1)
  // Fills a CPU float tensor.
  void fill_uniform(const View& v, double lo, double hi);
  void fill_normal(const View& v, double mean, double stddev);

 private:
  uint64_t s_[4];
  double spare_normal_ = 0;
  bool has_spare_ = false;
};

}  // namespace fe
