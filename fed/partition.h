// fed/partition.h — which share of its data a participant trains on in each round, and the
// splits of one data set into participants for simulations.
//
// Strategies (examples per round for participant i with nᵢ examples, R rounds):
//   all                nᵢ (every example, every round)
//   fixed_size         min(size, nᵢ)
//   percentage         max(1, round(percent/100 · nᵢ))
//   max_data_volume    ceil(max_j nⱼ / R), for everyone (capped at nᵢ): the largest participant
//                      walks through its data once over the run, the others at the same pace
//   volume_and_memory  see examples_per_round() in partition.cpp and docs/partitioning.md: the
//                      max_data_volume share, scaled down for a participant whose free memory
//                      (GPU, or RAM on the CPU) cannot hold a round's working set
// Successive rounds walk through the data: round r takes the next count examples of a
// permutation drawn from (seed, epoch), wrapping into the next epoch's permutation, so every
// example is used before any is reused and each round can get a different slice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fe {
class Rng;
}

namespace fe::fed {

enum class PartitionStrategy { all, fixed_size, percentage, max_data_volume, volume_and_memory };
PartitionStrategy parse_partition_strategy(const std::string& name);  // Error listing the valid names
const char* partition_strategy_name(PartitionStrategy strategy);

struct PartitionOptions {
  PartitionStrategy strategy = PartitionStrategy::all;
  int64_t size = 0;           // fixed_size
  double percent = 100.0;     // percentage
  // volume_and_memory: bytes of memory one example of a round needs (activations, gradients,
  // optimizer state amortised), and the share of free memory a round may use.
  double bytes_per_example = 1 << 20;
  double memory_fraction = 0.8;
};

struct ParticipantVolume {
  int64_t examples = 0;        // nᵢ
  double free_memory_bytes = 0;  // measured at join time (GPU memory, or RAM on the CPU)
};

// Examples participant `i` uses per round, given every participant's volume and the run's rounds.
int64_t examples_per_round(const PartitionOptions& options, const std::vector<ParticipantVolume>& all, size_t i,
                           int64_t rounds);

// Indices (into the participant's dataset of `dataset_size`) for round r ≥ 1 with `count` per round.
std::vector<int64_t> round_slice(int64_t dataset_size, int64_t count, int64_t round, uint64_t seed);

// Simulation splits of n examples into `parts` participants.
std::vector<std::vector<int64_t>> iid_split(int64_t n, int64_t parts, uint64_t seed);
// Per label, participant shares drawn from Dirichlet(α); small α: very uneven (non-IID).
std::vector<std::vector<int64_t>> dirichlet_split(const std::vector<std::string>& labels, int64_t parts, double alpha,
                                                  uint64_t seed);
// One Gamma(shape, 1) draw (Marsaglia–Tsang), the sampler behind dirichlet_split; exposed so its
// moments can be tested.
double sample_gamma(Rng& rng, double shape);

}  // namespace fe::fed
