#include "fed/partition.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include "core/error.h"
#include "engine/rng.h"
#include "core/number_text.h"

namespace fe::fed {
namespace {

constexpr std::array<const char*, 5> kStrategyNames = {"all", "fixed_size", "percentage", "max_data_volume",
                                                       "volume_and_memory"};

// Distinct streams for the different draws, so a slice permutation never equals a split
// permutation made from the same seed.
enum class Stream : uint64_t { round_slice = 1, iid_split = 2, dirichlet_split = 3 };

void require(bool valid, const std::string& where, const char* option, const std::string& value, const char* rule) {
  if (!valid) throw Error(where + ": " + option + " = " + value + "; it must be " + rule);
}

// splitmix64's finaliser. Rng's constructor steps splitmix64 from its seed, so seeds a multiple of
// the step apart would give overlapping streams; hashing (seed, stream, index) first keeps every
// stream independent.
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t stream_seed(uint64_t seed, Stream stream, int64_t index) {
  const uint64_t golden = 0x9e3779b97f4a7c15ull;
  return mix(mix(seed ^ static_cast<uint64_t>(stream) * golden) ^ static_cast<uint64_t>(index) * golden);
}

// Fisher–Yates over our own Rng: std::shuffle's algorithm differs between standard libraries, and
// the order must be the same everywhere for a run to be reproducible. The modulo bias is below
// size/2⁶⁴, far under anything a data order could show.
void shuffle(std::vector<int64_t>& items, Rng& rng) {
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[rng.next_u64() % i]);
}

std::vector<int64_t> permutation(int64_t n, Rng& rng) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  shuffle(order, rng);
  return order;
}

// ceil(max_j nⱼ / R): the largest participant walks through its data once over the R rounds.
int64_t max_data_volume_share(const std::vector<ParticipantVolume>& all, int64_t rounds) {
  int64_t largest = 0;
  for (const ParticipantVolume& p : all) largest = std::max(largest, p.examples);
  return largest / rounds + (largest % rounds != 0);  // no (largest + R − 1) overflow
}

// volume_and_memory: min(nᵢ, ceil(max_j nⱼ / R), floor(memory_fraction · freeᵢ / bytes_per_example)),
// at least 1. The memory cap only ever lowers the max_data_volume share: raising others' shares to
// make up for it would have them outpace the largest participant and drift further per round.
// A budget below one example still gives 1, so the participant takes part; if even that does not
// fit, training reports the out-of-memory error itself.
int64_t volume_and_memory_share(const PartitionOptions& options, const std::vector<ParticipantVolume>& all, size_t i,
                                int64_t rounds) {
  const std::string where = "partition volume_and_memory";
  require(options.bytes_per_example > 0, where, "bytes_per_example", number_text(options.bytes_per_example), "> 0");
  require(options.memory_fraction > 0 && options.memory_fraction <= 1, where, "memory_fraction",
          number_text(options.memory_fraction), "in (0, 1]");
  require(all[i].free_memory_bytes > 0, where, "free_memory_bytes", number_text(all[i].free_memory_bytes), "> 0");
  const int64_t share = std::min(all[i].examples, max_data_volume_share(all, rounds));
  // Compared in double first: a large budget would overflow int64.
  const double fitting = std::floor(options.memory_fraction * all[i].free_memory_bytes / options.bytes_per_example);
  if (fitting >= static_cast<double>(share)) return share;
  return std::max<int64_t>(1, static_cast<int64_t>(fitting));
}

// Dirichlet weights are computed from log Gamma draws: for small α, u^(1/α) underflows to 0 for
// every part at once and the proportions could not be normalised.
double sample_log_gamma(Rng& rng, double shape) {
  if (shape < 1) {
    // Boost: Gamma(α) = Gamma(α + 1) · U^(1/α), since Marsaglia–Tsang needs α ≥ 1.
    const double u = 1.0 - rng.uniform();  // (0, 1]: log stays finite
    return sample_log_gamma(rng, shape + 1) + std::log(u) / shape;
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9 * d);
  for (;;) {
    const double x = rng.normal();
    const double t = 1 + c * x;
    if (t <= 0) continue;
    const double v = t * t * t;
    const double u = 1.0 - rng.uniform();
    // Squeeze first (cheap, accepts ~98%), then the exact test.
    if (u < 1 - 0.0331 * x * x * x * x || std::log(u) < 0.5 * x * x + d * (1 - v + std::log(v)))
      return std::log(d) + std::log(v);
  }
}

std::vector<double> dirichlet_proportions(Rng& rng, int64_t parts, double alpha) {
  std::vector<double> weights(static_cast<size_t>(parts));
  for (double& w : weights) w = sample_log_gamma(rng, alpha);
  // exp(log − max): the largest weight is 1, so the sum never vanishes.
  const double largest = *std::max_element(weights.begin(), weights.end());
  double sum = 0;
  for (double& w : weights) sum += (w = std::exp(w - largest));
  for (double& w : weights) w /= sum;
  return weights;
}

// Part k gets members [round(P_{k−1}·m), round(P_k·m)) with P the cumulative proportions and the last
// boundary exactly m, so every member is assigned once and rounding errors do not accumulate
// (P only grows and llround is monotone, so the boundaries never go back).
void deal_by_proportions(const std::vector<int64_t>& members, const std::vector<double>& proportions,
                         std::vector<std::vector<int64_t>>& parts) {
  const int64_t m = static_cast<int64_t>(members.size());
  double cumulative = 0;
  int64_t begin = 0;
  for (size_t k = 0; k < parts.size(); ++k) {
    cumulative += proportions[k];
    const int64_t end =
        k + 1 == parts.size() ? m : std::min<int64_t>(m, std::llround(cumulative * static_cast<double>(m)));
    parts[k].insert(parts[k].end(), members.begin() + begin, members.begin() + end);
    begin = end;
  }
}

// A participant's examples in the data set's order; round_slice does the shuffling per round.
void sort_parts(std::vector<std::vector<int64_t>>& parts) {
  for (std::vector<int64_t>& part : parts) std::sort(part.begin(), part.end());
}

}  // namespace

PartitionStrategy parse_partition_strategy(const std::string& name) {
  for (size_t s = 0; s < kStrategyNames.size(); ++s)
    if (name == kStrategyNames[s]) return static_cast<PartitionStrategy>(s);
  throw Error("unknown partition strategy '" + name +
              "' (all, fixed_size, percentage, max_data_volume or volume_and_memory)");
}

const char* partition_strategy_name(PartitionStrategy strategy) {
  const size_t s = static_cast<size_t>(strategy);
  if (s >= kStrategyNames.size()) throw Error("partition: invalid strategy value " + std::to_string(s));
  return kStrategyNames[s];
}

int64_t examples_per_round(const PartitionOptions& options, const std::vector<ParticipantVolume>& all, size_t i,
                           int64_t rounds) {
  const std::string where = std::string("partition ") + partition_strategy_name(options.strategy);
  if (i >= all.size())
    throw Error(where + ": participant index " + std::to_string(i) + " is out of range (" + std::to_string(all.size()) +
                " participants)");
  require(rounds >= 1, where, "rounds", std::to_string(rounds), ">= 1");
  const int64_t n = all[i].examples;
  require(n >= 1, where, "examples", std::to_string(n), ">= 1 (a participant needs data to train on)");
  switch (options.strategy) {
    case PartitionStrategy::all:
      return n;
    case PartitionStrategy::fixed_size:
      require(options.size > 0, where, "size", std::to_string(options.size), "> 0");
      return std::min(options.size, n);
    case PartitionStrategy::percentage:
      require(options.percent > 0 && options.percent <= 100, where, "percent", number_text(options.percent),
              "in (0, 100]");
      return std::max<int64_t>(1, std::llround(options.percent / 100 * static_cast<double>(n)));
    case PartitionStrategy::max_data_volume:
      return std::min(n, max_data_volume_share(all, rounds));
    case PartitionStrategy::volume_and_memory:
      return volume_and_memory_share(options, all, i, rounds);
  }
  throw Error(where + ": invalid strategy");  // unreachable (the name lookup refused it); for -Wreturn-type
}

// Round r takes positions [(r−1)·count, r·count) of perm(epoch 0) ‖ perm(epoch 1) ‖ ...
std::vector<int64_t> round_slice(int64_t dataset_size, int64_t count, int64_t round, uint64_t seed) {
  const std::string where = "round_slice";
  require(dataset_size >= 1, where, "dataset_size", std::to_string(dataset_size), ">= 1");
  require(count >= 1, where, "count", std::to_string(count), ">= 1");
  require(round >= 1, where, "round", std::to_string(round), ">= 1");
  require(round - 1 <= std::numeric_limits<int64_t>::max() / count, where, "round", std::to_string(round),
          "small enough that (round − 1) · count fits in 64 bits");
  const int64_t start = (round - 1) * count;
  int64_t epoch = start / dataset_size;
  int64_t position = start % dataset_size;
  std::vector<int64_t> slice;
  slice.reserve(static_cast<size_t>(count));
  while (static_cast<int64_t>(slice.size()) < count) {
    Rng rng(stream_seed(seed, Stream::round_slice, epoch));
    const std::vector<int64_t> order = permutation(dataset_size, rng);
    const int64_t take = std::min(dataset_size - position, count - static_cast<int64_t>(slice.size()));
    slice.insert(slice.end(), order.begin() + position, order.begin() + position + take);
    ++epoch;
    position = 0;
  }
  return slice;
}

// The first n mod parts parts get ⌈n/parts⌉ examples, the rest ⌊n/parts⌋.
std::vector<std::vector<int64_t>> iid_split(int64_t n, int64_t parts, uint64_t seed) {
  require(n >= 0, "iid_split", "n", std::to_string(n), ">= 0");
  require(parts >= 1, "iid_split", "parts", std::to_string(parts), ">= 1");
  Rng rng(stream_seed(seed, Stream::iid_split, 0));
  const std::vector<int64_t> order = permutation(n, rng);
  std::vector<std::vector<int64_t>> split(static_cast<size_t>(parts));
  int64_t begin = 0;
  for (int64_t k = 0; k < parts; ++k) {
    const int64_t size = n / parts + (k < n % parts);
    split[k].assign(order.begin() + begin, order.begin() + begin + size);
    begin += size;
  }
  sort_parts(split);
  return split;
}

// Labels are visited in sorted order (std::map): a fixed order for the draws, whatever order the
// labels first appear in.
std::vector<std::vector<int64_t>> dirichlet_split(const std::vector<std::string>& labels, int64_t parts, double alpha,
                                                  uint64_t seed) {
  require(parts >= 1, "dirichlet_split", "parts", std::to_string(parts), ">= 1");
  require(alpha > 0 && std::isfinite(alpha), "dirichlet_split", "alpha", number_text(alpha), "> 0 and finite");
  std::map<std::string, std::vector<int64_t>> by_label;
  for (size_t i = 0; i < labels.size(); ++i) by_label[labels[i]].push_back(static_cast<int64_t>(i));
  Rng rng(stream_seed(seed, Stream::dirichlet_split, 0));
  std::vector<std::vector<int64_t>> split(static_cast<size_t>(parts));
  for (auto& [label, members] : by_label) {
    shuffle(members, rng);  // which examples of a label go where is random too
    deal_by_proportions(members, dirichlet_proportions(rng, parts, alpha), split);
  }
  sort_parts(split);
  return split;
}

double sample_gamma(Rng& rng, double shape) {
  if (!(shape > 0)) throw Error("sample_gamma: shape = " + number_text(shape) + "; it must be > 0");
  return std::exp(sample_log_gamma(rng, shape));
}

}  // namespace fe::fed
