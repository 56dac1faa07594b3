#include "engine/tensor.h"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/half.h"
#ifdef FE_HAVE_CUDA
#include "kernels/cuda/check.h"
#endif

namespace fe {
namespace {

std::atomic<size_t> gpu_bytes_in_use{0}, gpu_bytes_peak{0};

#ifdef FE_HAVE_CUDA
void count_gpu_allocation(size_t bytes) {
  const size_t now = gpu_bytes_in_use.fetch_add(bytes) + bytes;
  size_t peak = gpu_bytes_peak.load();
  while (now > peak && !gpu_bytes_peak.compare_exchange_weak(peak, now)) {
  }
}

// The device's default memory pool keeps what is freed (no release threshold), so the activations
// of the next step reuse it instead of going back to the driver.
void keep_pool_cached(int device) {
  static std::mutex mutex;
  static std::vector<bool> cached;
  const std::lock_guard lock(mutex);
  if (static_cast<size_t>(device) >= cached.size()) cached.resize(device + 1);
  if (cached[device]) return;
  cudaMemPool_t pool = nullptr;
  FE_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t no_limit = UINT64_MAX;
  FE_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &no_limit));
  cached[device] = true;
}

// Stream-ordered on the default stream, where every kernel runs: a training step frees hundreds
// of activations, and cudaFree would wait for the whole device each time. The storage is freed on
// the device it came from, whichever device the freeing thread is on.
std::shared_ptr<void> allocate_on_gpu(size_t size) {
  int device = 0;
  FE_CUDA_CHECK(cudaGetDevice(&device));
  keep_pool_cached(device);
  void* p = nullptr;
  FE_CUDA_CHECK(cudaMallocAsync(&p, size, nullptr));
  count_gpu_allocation(size);
  return std::shared_ptr<void>(p, [size, device](void* q) {
    int current = device;
    cudaGetDevice(&current);
    if (current != device) cudaSetDevice(device);
    cudaFreeAsync(q, nullptr);
    if (current != device) cudaSetDevice(current);
    gpu_bytes_in_use -= size;
  });
}
#endif

std::shared_ptr<void> allocate(size_t nbytes, Device device) {
  const size_t size = nbytes == 0 ? 64 : (nbytes + 63) / 64 * 64;
  if (device == Device::cpu) {
    void* p = std::aligned_alloc(64, size);
    if (p == nullptr) throw Error("Tensor: out of host memory allocating " + std::to_string(size) + " bytes");
    return std::shared_ptr<void>(p, std::free);
  }
#ifdef FE_HAVE_CUDA
  return allocate_on_gpu(size);
#else
  throw Error("Tensor: this build has no CUDA backend (nvcc was not found at configure time)");
#endif
}

}  // namespace

std::string gpu_unavailable_reason() {
#ifdef FE_HAVE_CUDA
  return cuda::device_count() > 0 ? "" : "no CUDA device is visible (check the driver and CUDA_VISIBLE_DEVICES)";
#else
  return "this build has no CUDA backend (nvcc was not found at configure time)";
#endif
}

GpuTensorMemory gpu_tensor_memory() { return {gpu_bytes_in_use.load(), gpu_bytes_peak.load()}; }

void reset_gpu_tensor_memory_peak() { gpu_bytes_peak = gpu_bytes_in_use.load(); }

Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
  Tensor t;
  t.view_.dtype = dtype;
  t.view_.shape = shape;
  t.view_.device = device;
  t.storage_ = allocate(t.view_.nbytes(), device);
  t.view_.data = t.storage_.get();
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  kernels::fill(t, 0.0);
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  Tensor t = *this;
  t.view_ = view_.reshaped(shape);
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  if (shape().rank() == 0 || begin < 0 || end < begin || end > shape()[0])
    throw Error("Tensor::rows: [" + std::to_string(begin) + ", " + std::to_string(end) +
                ") out of range for " + view_.str());
  Tensor t = *this;
  Shape s;
  s.push_back(end - begin);
  for (int i = 1; i < shape().rank(); ++i) s.push_back(shape()[i]);
  const size_t row_bytes = shape()[0] ? nbytes() / shape()[0] : 0;
  t.view_.shape = s;
  t.view_.data = static_cast<char*>(view_.data) + begin * row_bytes;
  return t;
}

Tensor Tensor::clone() const { return to(dtype()); }

Tensor Tensor::to(DType dtype) const {
  Tensor t = empty(shape(), dtype, device());
  kernels::convert(t, *this);
  return t;
}

Tensor Tensor::to_device(Device device) const {
  Tensor t = empty(shape(), dtype(), device);
  kernels::copy(t, *this);
  return t;
}

namespace {

template <class Stored, class ToDouble>
std::optional<NonFiniteElement> first_non_finite(const Tensor& t, ToDouble to_double) {
  const Stored* data = t.as<Stored>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (const double value = to_double(data[i]); !std::isfinite(value)) return NonFiniteElement{i, value};
  return std::nullopt;
}

}  // namespace

std::string value_text(double value) {
  if (std::isnan(value)) return "nan";
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

std::optional<NonFiniteElement> find_non_finite(const Tensor& t) {
  if (t.device() != Device::cpu) return find_non_finite(t.to_device(Device::cpu));
  switch (t.dtype()) {
    case DType::f32:
      return first_non_finite<float>(t, [](float x) { return static_cast<double>(x); });
    case DType::f64:
      return first_non_finite<double>(t, [](double x) { return x; });
    case DType::bf16:
      return first_non_finite<uint16_t>(t, [](uint16_t x) { return static_cast<double>(bf16_to_f32(x)); });
    case DType::f16:
      return first_non_finite<uint16_t>(t, [](uint16_t x) { return static_cast<double>(f16_to_f32(x)); });
    case DType::i32:
    case DType::i64:
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace fe
