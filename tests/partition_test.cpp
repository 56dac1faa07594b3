// Data partitioning (fed/partition.h): examples per round for each strategy on hand-computed
// cases, how rounds walk through the data (coverage, wrapping, determinism), the simulation splits
// (IID sizes, Dirichlet skew), the Gamma sampler's moments, and option errors naming the option.
#include "fed/partition.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>

#include "core/error.h"
#include "engine/rng.h"

namespace fe::fed {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

constexpr double kMiB = 1 << 20;

PartitionOptions with(PartitionStrategy strategy) {
  PartitionOptions options;
  options.strategy = strategy;
  return options;
}

std::vector<ParticipantVolume> volumes(std::initializer_list<int64_t> examples, double free_memory = 1024 * kMiB) {
  std::vector<ParticipantVolume> all;
  for (int64_t n : examples) all.push_back({n, free_memory});
  return all;
}

// How often each of n indices occurs in `indices`.
std::vector<int64_t> counts(const std::vector<int64_t>& indices, int64_t n) {
  std::vector<int64_t> seen(static_cast<size_t>(n), 0);
  for (int64_t i : indices) {
    EXPECT_GE(i, 0);
    EXPECT_LT(i, n);
    if (i >= 0 && i < n) ++seen[i];
  }
  return seen;
}

std::vector<int64_t> rounds_concatenated(int64_t n, int64_t count, int64_t first, int64_t last, uint64_t seed) {
  std::vector<int64_t> all;
  for (int64_t r = first; r <= last; ++r) {
    const std::vector<int64_t> slice = round_slice(n, count, r, seed);
    EXPECT_EQ(static_cast<int64_t>(slice.size()), count);
    all.insert(all.end(), slice.begin(), slice.end());
  }
  return all;
}

std::vector<int64_t> flatten(const std::vector<std::vector<int64_t>>& parts) {
  std::vector<int64_t> all;
  for (const auto& part : parts) all.insert(all.end(), part.begin(), part.end());
  return all;
}

TEST(Partition, NamesRoundTrip) {
  for (const char* name : {"all", "fixed_size", "percentage", "max_data_volume", "volume_and_memory"})
    EXPECT_STREQ(partition_strategy_name(parse_partition_strategy(name)), name);
  EXPECT_THAT([] { parse_partition_strategy("everything"); },
              ThrowsMessage<Error>(AllOf(HasSubstr("'everything'"), HasSubstr("volume_and_memory"))));
}

TEST(Partition, AllFixedSizeAndPercentage) {
  const auto all = volumes({1000, 7, 40});
  EXPECT_EQ(examples_per_round(with(PartitionStrategy::all), all, 1, 10), 7);

  PartitionOptions fixed = with(PartitionStrategy::fixed_size);
  fixed.size = 16;
  EXPECT_EQ(examples_per_round(fixed, all, 0, 10), 16);
  EXPECT_EQ(examples_per_round(fixed, all, 1, 10), 7);  // capped at nᵢ

  PartitionOptions percent = with(PartitionStrategy::percentage);
  percent.percent = 50;
  EXPECT_EQ(examples_per_round(percent, all, 0, 10), 500);
  EXPECT_EQ(examples_per_round(percent, all, 1, 10), 4);  // round(3.5) = 4
  percent.percent = 12.5;
  EXPECT_EQ(examples_per_round(percent, all, 2, 10), 5);
  percent.percent = 1;
  EXPECT_EQ(examples_per_round(percent, all, 1, 10), 1);  // round(0.07) = 0, at least 1
  percent.percent = 100;
  EXPECT_EQ(examples_per_round(percent, all, 1, 10), 7);
}

TEST(Partition, MaxDataVolume) {
  const auto all = volumes({1000, 300, 50, 1001});
  const PartitionOptions options = with(PartitionStrategy::max_data_volume);
  // ceil(1001 / 10) = 101 for everyone, capped at nᵢ.
  EXPECT_EQ(examples_per_round(options, all, 0, 10), 101);
  EXPECT_EQ(examples_per_round(options, all, 1, 10), 101);
  EXPECT_EQ(examples_per_round(options, all, 2, 10), 50);
  EXPECT_EQ(examples_per_round(options, all, 3, 10), 101);
  EXPECT_EQ(examples_per_round(options, all, 3, 1), 1001);
  EXPECT_EQ(examples_per_round(options, all, 1, 2000), 1);  // ceil(1001 / 2000)
}

TEST(Partition, VolumeAndMemory) {
  PartitionOptions options = with(PartitionStrategy::volume_and_memory);
  options.bytes_per_example = kMiB;
  options.memory_fraction = 0.5;
  // Shares are ceil(1000 / 10) = 100, capped at nᵢ; memory caps floor(0.5 · free / 1 MiB).
  const std::vector<ParticipantVolume> all = {
      {1000, 1024 * kMiB},  // cap 512: large memory, the max_data_volume share
      {300, 80 * kMiB},     // cap 40: memory-bound
      {50, 1024 * kMiB},    // capped at n = 50
      {30, 50 * kMiB},      // cap 25 < n = 30
      {500, 0.5 * kMiB},    // cap 0: still one example
      {500, 201 * kMiB},    // cap floor(100.5) = 100: just fits
  };
  const std::vector<int64_t> expected = {100, 40, 50, 25, 1, 100};
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(examples_per_round(options, all, i, 10), expected[i]) << i;
}

TEST(Partition, RoundsCoverEachEpochOnceWhenCountDividesN) {
  const int64_t n = 12, count = 4;
  const std::vector<int64_t> epoch1 = rounds_concatenated(n, count, 1, 3, 7);
  const std::vector<int64_t> epoch2 = rounds_concatenated(n, count, 4, 6, 7);
  EXPECT_EQ(counts(epoch1, n), std::vector<int64_t>(n, 1));
  EXPECT_EQ(counts(epoch2, n), std::vector<int64_t>(n, 1));
  EXPECT_NE(epoch1, epoch2);  // a fresh permutation each epoch
}

TEST(Partition, RoundsUseEveryIndexEquallyOftenWhenCountDoesNotDivideN) {
  // lcm(10, 4) = 20 positions = n/gcd = 5 rounds per cycle; over k = 3 cycles each index is used
  // 3 · 20/10 = 6 times.
  const int64_t n = 10, count = 4;
  EXPECT_EQ(counts(rounds_concatenated(n, count, 1, 15, 3), n), std::vector<int64_t>(n, 6));
  // Every index is used before any is reused: the first n positions are one permutation.
  std::vector<int64_t> first_epoch = rounds_concatenated(n, count, 1, 3, 3);
  first_epoch.resize(n);
  EXPECT_EQ(counts(first_epoch, n), std::vector<int64_t>(n, 1));
}

TEST(Partition, CountLargerThanDatasetWrapsEpochs) {
  const int64_t n = 5, count = 12;
  // Round 1 = two full epochs and 2 positions of the third: each index 2 or 3 times.
  for (int64_t c : counts(round_slice(n, count, 1, 11), n)) EXPECT_TRUE(c == 2 || c == 3) << c;
  // 5 rounds = 60 positions = 12 epochs.
  EXPECT_EQ(counts(rounds_concatenated(n, count, 1, 5, 11), n), std::vector<int64_t>(n, 12));
}

TEST(Partition, RoundSliceIsDeterministicBySeed) {
  EXPECT_EQ(round_slice(100, 30, 5, 42), round_slice(100, 30, 5, 42));
  EXPECT_NE(round_slice(100, 30, 5, 42), round_slice(100, 30, 5, 43));
  EXPECT_NE(round_slice(100, 30, 1, 42), round_slice(100, 30, 2, 42));
}

TEST(Partition, IidSplitSizesAndCoverage) {
  const auto split = iid_split(103, 10, 5);
  ASSERT_EQ(split.size(), 10u);
  for (size_t k = 0; k < split.size(); ++k) EXPECT_EQ(split[k].size(), k < 3 ? 11u : 10u) << k;
  EXPECT_EQ(counts(flatten(split), 103), std::vector<int64_t>(103, 1));  // disjoint and covering
  EXPECT_EQ(split, iid_split(103, 10, 5));
  EXPECT_NE(split, iid_split(103, 10, 6));
  EXPECT_EQ(iid_split(2, 4, 1)[3].size(), 0u);  // more parts than examples: some stay empty
}

// Average over non-empty parts of the largest single label's share of the part.
double mean_max_label_share(const std::vector<std::vector<int64_t>>& split, const std::vector<std::string>& labels) {
  double total = 0;
  int nonempty = 0;
  for (const auto& part : split) {
    if (part.empty()) continue;
    std::map<std::string, int64_t> per_label;
    int64_t largest = 0;
    for (int64_t i : part) largest = std::max(largest, ++per_label[labels[i]]);
    total += static_cast<double>(largest) / static_cast<double>(part.size());
    ++nonempty;
  }
  return total / nonempty;
}

TEST(Partition, DirichletSplitAssignsEveryExampleOnceWithAlphaControllingSkew) {
  std::vector<std::string> labels;
  for (int i = 0; i < 2000; ++i) labels.push_back("label" + std::to_string(i % 10));
  const auto skewed = dirichlet_split(labels, 10, 0.1, 9);
  const auto even = dirichlet_split(labels, 10, 100, 9);
  for (const auto* split : {&skewed, &even}) {
    ASSERT_EQ(split->size(), 10u);
    EXPECT_EQ(counts(flatten(*split), 2000), std::vector<int64_t>(2000, 1));
  }
  // 10 balanced labels: a perfectly even part has max share 0.1, a single-label part 1.
  EXPECT_GT(mean_max_label_share(skewed, labels), 0.5);
  EXPECT_LT(mean_max_label_share(even, labels), 0.2);
  EXPECT_EQ(skewed, dirichlet_split(labels, 10, 0.1, 9));
}

TEST(Partition, DirichletSplitSurvivesTinyAlpha) {
  // u^(1/α) underflows for every part at α = 1e-4; the log-space weights still normalise.
  const std::vector<std::string> labels(300, "a");
  const auto split = dirichlet_split(labels, 5, 1e-4, 2);
  EXPECT_EQ(counts(flatten(split), 300), std::vector<int64_t>(300, 1));
}

TEST(Partition, GammaSamplerMoments) {
  // Gamma(α, 1) has mean α and variance α.
  constexpr int kDraws = 200000;
  for (double alpha : {0.3, 1.0, 5.0}) {
    Rng rng(17);
    double sum = 0, sum_sq = 0;
    for (int i = 0; i < kDraws; ++i) {
      const double x = sample_gamma(rng, alpha);
      sum += x;
      sum_sq += x * x;
    }
    const double mean = sum / kDraws;
    const double variance = sum_sq / kDraws - mean * mean;
    EXPECT_NEAR(mean / alpha, 1, 0.02) << alpha;
    EXPECT_NEAR(variance / alpha, 1, 0.04) << alpha;
  }
}

TEST(Partition, InvalidOptionsNameTheOption) {
  const auto all = volumes({100, 50});
  PartitionOptions fixed = with(PartitionStrategy::fixed_size);
  EXPECT_THAT([&] { examples_per_round(fixed, all, 0, 10); }, ThrowsMessage<Error>(HasSubstr("size = 0")));
  PartitionOptions percent = with(PartitionStrategy::percentage);
  percent.percent = 0;
  EXPECT_THAT([&] { examples_per_round(percent, all, 0, 10); }, ThrowsMessage<Error>(HasSubstr("percent = 0")));
  percent.percent = 100.5;
  EXPECT_THAT([&] { examples_per_round(percent, all, 0, 10); }, ThrowsMessage<Error>(HasSubstr("percent = 100.5")));
  const PartitionOptions volume = with(PartitionStrategy::max_data_volume);
  EXPECT_THAT([&] { examples_per_round(volume, all, 0, 0); }, ThrowsMessage<Error>(HasSubstr("rounds = 0")));
  EXPECT_THAT([&] { examples_per_round(volume, all, 2, 10); },
              ThrowsMessage<Error>(AllOf(HasSubstr("participant index 2"), HasSubstr("2 participants"))));
  EXPECT_THAT([&] { examples_per_round(volume, volumes({0}), 0, 10); },
              ThrowsMessage<Error>(HasSubstr("examples = 0")));

  PartitionOptions memory = with(PartitionStrategy::volume_and_memory);
  memory.bytes_per_example = 0;
  EXPECT_THAT([&] { examples_per_round(memory, all, 0, 10); },
              ThrowsMessage<Error>(HasSubstr("bytes_per_example = 0")));
  memory = with(PartitionStrategy::volume_and_memory);
  memory.memory_fraction = 1.5;
  EXPECT_THAT([&] { examples_per_round(memory, all, 0, 10); },
              ThrowsMessage<Error>(HasSubstr("memory_fraction = 1.5")));
  memory = with(PartitionStrategy::volume_and_memory);
  EXPECT_THAT([&] { examples_per_round(memory, volumes({100}, 0), 0, 10); },
              ThrowsMessage<Error>(HasSubstr("free_memory_bytes = 0")));

  EXPECT_THAT([] { round_slice(10, 0, 1, 1); }, ThrowsMessage<Error>(HasSubstr("count = 0")));
  EXPECT_THAT([] { round_slice(10, 2, 0, 1); }, ThrowsMessage<Error>(HasSubstr("round = 0")));
  EXPECT_THAT([] { iid_split(10, 0, 1); }, ThrowsMessage<Error>(HasSubstr("parts = 0")));
  const std::vector<std::string> labels = {"a", "b"};
  EXPECT_THAT([&] { dirichlet_split(labels, 0, 1, 1); }, ThrowsMessage<Error>(HasSubstr("parts = 0")));
  EXPECT_THAT([&] { dirichlet_split(labels, 2, 0, 1); }, ThrowsMessage<Error>(HasSubstr("alpha = 0")));
  Rng rng(1);
  EXPECT_THAT([&] { sample_gamma(rng, -1); }, ThrowsMessage<Error>(HasSubstr("shape = -1")));
}

}  // namespace
}  // namespace fe::fed
