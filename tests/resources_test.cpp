// The resource sampler reads sane figures from /proc (and NVML where there is one), and flattens
// them into heartbeat metrics under the documented keys.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "fed/resources.h"

namespace fe::fed {
namespace {

// Keeps this thread busy for `seconds` of wall time.
double burn_cpu(double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  double x = 1;
  while (std::chrono::steady_clock::now() < end)
    for (int i = 0; i < 10000; ++i) x = std::sqrt(x + i);
  return x;
}

TEST(ResourceSampler, ReportsSaneMemoryFigures) {
  const ResourceSample s = ResourceSampler().sample();
  EXPECT_GT(s.ram_total_bytes, 0);
  EXPECT_GT(s.ram_used_bytes, 0);
  EXPECT_LT(s.ram_used_bytes, s.ram_total_bytes);
  EXPECT_GT(s.ram_available_bytes, 0);
  EXPECT_DOUBLE_EQ(s.ram_used_bytes + s.ram_available_bytes, s.ram_total_bytes);
  EXPECT_GT(s.process_rss_bytes, 1 << 20);  // at least this test binary
  EXPECT_LT(s.process_rss_bytes, s.ram_total_bytes);
}

TEST(ResourceSampler, CpuPercentRisesWhileBusyAndCoversOnlyTheTimeSinceTheLastSample) {
  ResourceSampler sampler;
  EXPECT_GT(burn_cpu(0.15), 0);
  const ResourceSample busy = sampler.sample();
  EXPECT_GT(busy.process_cpu_percent, 0);
  EXPECT_LE(busy.process_cpu_percent, 100);
  EXPECT_GT(busy.cpu_percent, 0);
  EXPECT_LE(busy.cpu_percent, 100);

  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const ResourceSample idle = sampler.sample();
  EXPECT_LT(idle.process_cpu_percent, busy.process_cpu_percent);
  EXPECT_GE(idle.cpu_percent, 0);
  EXPECT_LE(idle.cpu_percent, 100);
}

TEST(ResourceSampler, ReportsNoGpusWithoutTheDriverAndSaneOnesWithIt) {
  const ResourceSample s = ResourceSampler().sample();
  void* nvml = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (nvml == nullptr) EXPECT_TRUE(s.gpus.empty());
  else ::dlclose(nvml);
  for (const GpuSample& gpu : s.gpus) {
    SCOPED_TRACE(gpu.index);
    EXPECT_GE(gpu.index, 0);
    EXPECT_FALSE(gpu.name.empty());
    EXPECT_GT(gpu.memory_total_bytes, 0);
    EXPECT_LE(gpu.memory_used_bytes, gpu.memory_total_bytes);
    EXPECT_LE(gpu.memory_free_bytes, gpu.memory_total_bytes);
    EXPECT_GE(gpu.utilization_percent, 0);
    EXPECT_LE(gpu.utilization_percent, 100);
  }
}

TEST(ResourceFigures, FlattensEveryFieldUnderTheDocumentedKeys) {
  const ResourceSample s{.cpu_percent = 12.5,
                         .process_cpu_percent = 6.25,
                         .ram_used_bytes = 3e9,
                         .ram_total_bytes = 8e9,
                         .ram_available_bytes = 5e9,
                         .process_rss_bytes = 2e8,
                         .gpus = {{.index = 2, .name = "A", .memory_used_bytes = 1, .memory_free_bytes = 2,
                                   .memory_total_bytes = 3, .utilization_percent = 40},
                                  {.index = 5, .name = "B", .memory_used_bytes = 4, .memory_free_bytes = 5,
                                   .memory_total_bytes = 9, .utilization_percent = 60}}};
  std::map<std::string, double> figures = {{"loss", 1.5}};  // what is already there stays
  add_resource_figures(s, figures);
  const std::map<std::string, double> expected = {
      {"loss", 1.5},
      {"cpu_percent", 12.5},
      {"process_cpu_percent", 6.25},
      {"ram_used_bytes", 3e9},
      {"ram_total_bytes", 8e9},
      {"ram_available_bytes", 5e9},
      {"process_rss_bytes", 2e8},
      {"gpu_count", 2},
      {"gpu0_index", 2},
      {"gpu0_memory_used_bytes", 1},
      {"gpu0_memory_free_bytes", 2},
      {"gpu0_memory_total_bytes", 3},
      {"gpu0_utilization_percent", 40},
      {"gpu1_index", 5},
      {"gpu1_memory_used_bytes", 4},
      {"gpu1_memory_free_bytes", 5},
      {"gpu1_memory_total_bytes", 9},
      {"gpu1_utilization_percent", 60},
  };
  EXPECT_EQ(figures, expected);
}

TEST(ResourceFigures, NoGpusIsACountOfZero) {
  std::map<std::string, double> figures;
  add_resource_figures(ResourceSample{}, figures);
  EXPECT_EQ(figures.at("gpu_count"), 0);
  EXPECT_FALSE(figures.contains("gpu0_memory_used_bytes"));
}

// Three ranks: rank 0 sees two GPUs and uses the first; rank 1 (local rank 1 on that node) uses
// the second; rank 2 has none. Rank 0's own machine figures are replaced by the gathered table.
TEST(ResourceFigures, RankGpuSlotsReplaceTheMachinesGpus) {
  ResourceSample node;
  node.gpus = {GpuSample{.index = 0, .memory_used_bytes = 1, .memory_free_bytes = 2, .memory_total_bytes = 3, .utilization_percent = 10},
               GpuSample{.index = 1, .memory_used_bytes = 4, .memory_free_bytes = 5, .memory_total_bytes = 9, .utilization_percent = 20}};
  std::vector<double> table(3 * kGpuSlotSize, 0.0), slot(kGpuSlotSize);
  for (int rank = 0; rank < 3; ++rank) {
    pack_rank_gpu(rank < 2 ? node : ResourceSample{}, rank, slot);
    for (size_t i = 0; i < kGpuSlotSize; ++i) table[rank * kGpuSlotSize + i] += slot[i];  // the all-reduce
  }
  std::map<std::string, double> figures;
  add_resource_figures(node, figures);
  figures["gpu7_memory_used_bytes"] = 1;  // whatever the machine reported is replaced
  set_rank_gpu_figures(table, figures);
  const std::map<std::string, double> expected_gpus = {
      {"gpu_count", 2},
      {"gpu0_memory_used_bytes", 1}, {"gpu0_memory_free_bytes", 2}, {"gpu0_memory_total_bytes", 3}, {"gpu0_utilization_percent", 10},
      {"gpu1_memory_used_bytes", 4}, {"gpu1_memory_free_bytes", 5}, {"gpu1_memory_total_bytes", 9}, {"gpu1_utilization_percent", 20}};
  std::map<std::string, double> gpus;
  for (const auto& [key, value] : figures)
    if (key.starts_with("gpu")) gpus[key] = value;
  EXPECT_EQ(gpus, expected_gpus);
  EXPECT_EQ(figures.at("ram_total_bytes"), node.ram_total_bytes);
}

}  // namespace
}  // namespace fe::fed
