#include "fed/resources.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>

namespace fe::fed {
namespace {

// The slice of NVML's C ABI used here, declared by hand: nvml.h is not installed everywhere the
// engine builds, and the library is only looked for at run time.
using nvmlReturn_t = int;  // an enum in nvml.h; NVML_SUCCESS = 0
constexpr nvmlReturn_t kNvmlSuccess = 0;
struct nvmlDevice_st;
using nvmlDevice_t = nvmlDevice_st*;
struct nvmlMemory_t {
  unsigned long long total, free, used;
};
struct nvmlUtilization_t {
  unsigned int gpu, memory;
};
constexpr unsigned int kNvmlDeviceNameBufferSize = 96;  // NVML_DEVICE_NAME_V2_BUFFER_SIZE

// The /proc/stat "cpu" line: user nice system idle iowait irq softirq steal (guest time is already
// inside user and nice). Busy is everything but idle and iowait.
void read_machine_cpu(uint64_t& busy, uint64_t& total) {
  std::ifstream in("/proc/stat");
  std::string label;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> label >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  total = user + nice + system + idle + iowait + irq + softirq + steal;
  busy = total - idle - iowait;
}

// utime + stime of the whole process (every thread), fields 14 and 15 of /proc/self/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.
uint64_t read_process_cpu() {
  std::ifstream in("/proc/self/stat");
  const std::string line((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t name_end = line.rfind(')');
  if (name_end == std::string::npos) return 0;
  std::istringstream fields(line.substr(name_end + 1));
  std::string skipped;
  for (int field = 3; field <= 13; ++field) fields >> skipped;
  uint64_t utime = 0, stime = 0;
  fields >> utime >> stime;
  return utime + stime;
}

// MemTotal and MemAvailable of /proc/meminfo, in bytes ("MemTotal:  16318056 kB").
void read_meminfo(double& total_bytes, double& available_bytes) {
  std::ifstream in("/proc/meminfo");
  std::string name, rest_of_line;
  double kib = 0;
  while (in >> name >> kib) {
    std::getline(in, rest_of_line);
    if (name == "MemTotal:") total_bytes = kib * 1024;
    if (name == "MemAvailable:") available_bytes = kib * 1024;
  }
}

double process_rss_bytes() {
  std::ifstream in("/proc/self/statm");
  double size_pages = 0, resident_pages = 0;
  in >> size_pages >> resident_pages;
  return resident_pages * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

// 100 · Δpart / Δwhole between two readings of counters that only grow (a counter seen going
// back, e.g. across CPU hotplug, counts as no time).
double percent_of(uint64_t part_before, uint64_t part_now, uint64_t whole_before, uint64_t whole_now) {
  if (whole_now <= whole_before || part_now < part_before) return 0.0;
  return 100.0 * static_cast<double>(part_now - part_before) / static_cast<double>(whole_now - whole_before);
}

// The GPUs CUDA_VISIBLE_DEVICES lets this process see, when it is a plain index list; nullopt
// (every GPU) otherwise.
std::optional<std::vector<unsigned int>> visible_gpu_indices() {
  const char* env = std::getenv("CUDA_VISIBLE_DEVICES");
  if (env == nullptr || *env == '\0') return std::nullopt;
  std::vector<unsigned int> indices;
  std::istringstream list(env);
  for (std::string item; std::getline(list, item, ',');) {
    if (item.empty() || item.size() > 6) return std::nullopt;
    for (char c : item)
      if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    indices.push_back(static_cast<unsigned int>(std::stoul(item)));
  }
  return indices;
}

}  // namespace

// NVML, loaded and initialised for the sampler's lifetime. create() returns null whenever any step
// fails, so a machine without the driver has no GPUs rather than an error.
class ResourceSampler::Nvml {
 public:
  static std::unique_ptr<Nvml> create() {
    void* library = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) return nullptr;
    std::unique_ptr<Nvml> nvml(new Nvml(library));
    if (!nvml->resolve_all() || nvml->init_() != kNvmlSuccess) return nullptr;
    nvml->initialised_ = true;
    return nvml;
  }
  ~Nvml() {
    if (initialised_) shutdown_();
    ::dlclose(library_);
  }

  std::vector<GpuSample> sample() const {
    std::vector<GpuSample> gpus;
    unsigned int count = 0;
    if (device_count_(&count) != kNvmlSuccess) return gpus;
    const std::optional<std::vector<unsigned int>> visible = visible_gpu_indices();
    if (visible) {
      for (unsigned int index : *visible)
        if (index < count) add_gpu(index, gpus);
    } else {
      for (unsigned int index = 0; index < count; ++index) add_gpu(index, gpus);
    }
    return gpus;
  }

 private:
  explicit Nvml(void* library) : library_(library) {}

  template <class Function>
  bool resolve(Function*& function, const char* symbol) {
    function = reinterpret_cast<Function*>(::dlsym(library_, symbol));
    return function != nullptr;
  }
  bool resolve_all() {
    return resolve(init_, "nvmlInit_v2") && resolve(shutdown_, "nvmlShutdown") &&
           resolve(device_count_, "nvmlDeviceGetCount_v2") &&
           resolve(device_by_index_, "nvmlDeviceGetHandleByIndex_v2") && resolve(device_name_, "nvmlDeviceGetName") &&
           resolve(memory_info_, "nvmlDeviceGetMemoryInfo") && resolve(utilization_, "nvmlDeviceGetUtilizationRates");
  }

  // A GPU that does not answer (fallen off the bus, no permission) is left out.
  void add_gpu(unsigned int index, std::vector<GpuSample>& gpus) const {
    nvmlDevice_t device = nullptr;
    nvmlMemory_t memory{};
    if (device_by_index_(index, &device) != kNvmlSuccess || memory_info_(device, &memory) != kNvmlSuccess) return;
    char name[kNvmlDeviceNameBufferSize] = {};
    if (device_name_(device, name, sizeof name) != kNvmlSuccess) name[0] = '\0';
    nvmlUtilization_t utilization{};
    const bool measured = utilization_(device, &utilization) == kNvmlSuccess;  // unsupported on some GPUs
    gpus.push_back({.index = static_cast<int>(index),
                    .name = name,
                    .memory_used_bytes = static_cast<double>(memory.used),
                    .memory_free_bytes = static_cast<double>(memory.free),
                    .memory_total_bytes = static_cast<double>(memory.total),
                    .utilization_percent = measured ? static_cast<double>(utilization.gpu) : 0.0});
  }

  void* library_;
  bool initialised_ = false;
  nvmlReturn_t (*init_)() = nullptr;
  nvmlReturn_t (*shutdown_)() = nullptr;
  nvmlReturn_t (*device_count_)(unsigned int*) = nullptr;
  nvmlReturn_t (*device_by_index_)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*device_name_)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*memory_info_)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*utilization_)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
};

ResourceSampler::ResourceSampler() : nvml_(Nvml::create()) {
  read_machine_cpu(previous_.machine_busy, previous_.machine_total);
  previous_.process = read_process_cpu();
}

ResourceSampler::~ResourceSampler() = default;

ResourceSample ResourceSampler::sample() {
  CpuTimes now;
  read_machine_cpu(now.machine_busy, now.machine_total);
  now.process = read_process_cpu();
  ResourceSample s;
  // Both in clock ticks, so the process's share of the machine needs no wall clock or core count.
  s.cpu_percent = percent_of(previous_.machine_busy, now.machine_busy, previous_.machine_total, now.machine_total);
  const double process = percent_of(previous_.process, now.process, previous_.machine_total, now.machine_total);
  // The kernel updates the two counters at slightly different moments: a fully busy machine's
  // only process could read a hair over 100.
  s.process_cpu_percent = std::min(100.0, process);
  read_meminfo(s.ram_total_bytes, s.ram_available_bytes);
  s.process_rss_bytes = process_rss_bytes();
  s.ram_used_bytes = s.ram_total_bytes - s.ram_available_bytes;
  if (nvml_) s.gpus = nvml_->sample();
  previous_ = now;
  return s;
}

namespace {

void add_gpu_figures(size_t k, const GpuSample& gpu, bool with_index, std::map<std::string, double>& figures) {
  const std::string prefix = "gpu" + std::to_string(k) + "_";
  if (with_index) figures[prefix + "index"] = gpu.index;
  figures[prefix + "memory_used_bytes"] = gpu.memory_used_bytes;
  figures[prefix + "memory_free_bytes"] = gpu.memory_free_bytes;
  figures[prefix + "memory_total_bytes"] = gpu.memory_total_bytes;
  figures[prefix + "utilization_percent"] = gpu.utilization_percent;
}

}  // namespace

void add_resource_figures(const ResourceSample& sample, std::map<std::string, double>& figures) {
  figures["cpu_percent"] = sample.cpu_percent;
  figures["process_cpu_percent"] = sample.process_cpu_percent;
  figures["ram_used_bytes"] = sample.ram_used_bytes;
  figures["ram_total_bytes"] = sample.ram_total_bytes;
  figures["ram_available_bytes"] = sample.ram_available_bytes;
  figures["process_rss_bytes"] = sample.process_rss_bytes;
  figures["gpu_count"] = static_cast<double>(sample.gpus.size());
  for (size_t k = 0; k < sample.gpus.size(); ++k) add_gpu_figures(k, sample.gpus[k], true, figures);
}

void pack_rank_gpu(const ResourceSample& sample, int local_rank, std::span<double> slot) {
  std::fill(slot.begin(), slot.end(), 0.0);
  if (local_rank < 0 || static_cast<size_t>(local_rank) >= sample.gpus.size()) return;
  const GpuSample& gpu = sample.gpus[local_rank];
  const double packed[kGpuSlotSize] = {1.0, gpu.memory_used_bytes, gpu.memory_free_bytes, gpu.memory_total_bytes,
                                       gpu.utilization_percent};
  std::copy(packed, packed + kGpuSlotSize, slot.begin());
}

void set_rank_gpu_figures(std::span<const double> slots, std::map<std::string, double>& figures) {
  std::erase_if(figures, [](const auto& figure) { return figure.first.starts_with("gpu"); });
  size_t count = 0;
  for (size_t at = 0; at + kGpuSlotSize <= slots.size(); at += kGpuSlotSize) {
    if (slots[at] == 0) continue;
    const GpuSample gpu{.memory_used_bytes = slots[at + 1], .memory_free_bytes = slots[at + 2],
                        .memory_total_bytes = slots[at + 3], .utilization_percent = slots[at + 4]};
    add_gpu_figures(count++, gpu, false, figures);
  }
  figures["gpu_count"] = static_cast<double>(count);
}

}  // namespace fe::fed
