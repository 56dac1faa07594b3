// fed/resources.h — what a participant's machine and process are using, sampled for each heartbeat.
//
//   ResourceSampler sampler;               // reads a first CPU reading, loads NVML if it can
//   ResourceSample s = sampler.sample();   // CPU % over the time since the previous sample
//   add_resource_figures(s, message.metrics);
//
// Sources (Linux): /proc/stat and /proc/self/stat for CPU time, /proc/meminfo for RAM,
// /proc/self/statm for the resident set, and NVML for GPUs. NVML (libnvidia-ml.so.1) is loaded at
// run time, so a binary built here runs on machines without the NVIDIA driver: no library, no
// driver or any NVML failure simply means no GPUs, never an error.
//
// Units: every percentage is of the whole machine, 0..100 (all cores busy = 100), so the machine
// and the process figures compare directly (a process busy on 1 core of 16 shows 6.25). RAM "used"
// is total − available (what `free` calls used, page cache excluded). Figures cover the machine
// as /proc shows it, not a container's cgroup limits.
//
// GPUs: when CUDA_VISIBLE_DEVICES is a list of plain indices ("0,2"), only those GPUs are
// reported (taken as NVML indices, which match CUDA's only under CUDA_DEVICE_ORDER=PCI_BUS_ID);
// anything else there (UUIDs, MIG names, empty, unset) reports every GPU.
//
// Flat figures (add_resource_figures), as they travel in a heartbeat's Message::metrics:
//   cpu_percent, process_cpu_percent, ram_used_bytes, ram_total_bytes, ram_available_bytes,
//   process_rss_bytes, gpu_count, and for each reported GPU k = 0 .. gpu_count−1 (its position in
//   ResourceSample::gpus): gpu<k>_index (the NVML index), gpu<k>_memory_used_bytes,
//   gpu<k>_memory_free_bytes, gpu<k>_memory_total_bytes, gpu<k>_utilization_percent.
// GPU names are strings and do not travel.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace fe::fed {

struct GpuSample {
  int index = 0;  // NVML index on this machine
  std::string name;
  double memory_used_bytes = 0, memory_free_bytes = 0, memory_total_bytes = 0;
  double utilization_percent = 0;  // of the last sample period NVML measured (up to 1 s)
};

struct ResourceSample {
  double cpu_percent = 0;          // the whole machine busy, 0..100
  double process_cpu_percent = 0;  // this process, 0..100 of the whole machine
  double ram_used_bytes = 0, ram_total_bytes = 0, ram_available_bytes = 0;
  double process_rss_bytes = 0;
  std::vector<GpuSample> gpus;
};

class ResourceSampler {
 public:
  ResourceSampler();
  ~ResourceSampler();
  ResourceSampler(const ResourceSampler&) = delete;
  ResourceSampler& operator=(const ResourceSampler&) = delete;

  // CPU percentages cover the time since the previous call (the first call: since construction).
  ResourceSample sample();

 private:
  struct CpuTimes {
    uint64_t machine_busy = 0, machine_total = 0, process = 0;  // clock ticks
  };
  class Nvml;

  CpuTimes previous_;
  std::unique_ptr<Nvml> nvml_;  // null when NVML is unavailable
};

void add_resource_figures(const ResourceSample& sample, std::map<std::string, double>& figures);

// A participant with several ranks reports the GPU of every rank, on every node: each rank packs
// the GPU it uses (its local rank's among those it sees) into a slot of kGpuSlotSize numbers (all
// zero without one), the ranks sum their slots into one table (slot r at r·kGpuSlotSize), and rank
// 0 puts the table in its heartbeat in place of its own machine's GPU figures: gpu<k> is then the
// k-th rank that has a GPU, without gpu<k>_index (NVML indices repeat across nodes).
inline constexpr size_t kGpuSlotSize = 5;
void pack_rank_gpu(const ResourceSample& sample, int local_rank, std::span<double> slot);
void set_rank_gpu_figures(std::span<const double> slots, std::map<std::string, double>& figures);

}  // namespace fe::fed
