// engine/tensor.h — owning tensors.
//
// A Tensor is a View plus shared ownership of its storage. Copies share storage (like
// torch.Tensor); clone() copies the data. Memory comes from the device's allocator: 64-byte aligned
// host memory on the CPU; on a GPU, the current device's default memory pool, allocated and freed
// in order on the default stream (where every kernel runs), so freeing never waits for the GPU.
// Work on another stream (NCCL's) must be finished before its tensors are released.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "kernels/view.h"

namespace fe {

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised storage.
  static Tensor empty(Shape shape, DType dtype, Device device = Device::cpu);
  static Tensor zeros(Shape shape, DType dtype, Device device = Device::cpu);

  const View& view() const { return view_; }
  operator const View&() const { return view_; }
  void* data() const { return view_.data; }
  template <class T>
  T* as() const { return view_.as<T>(); }
  DType dtype() const { return view_.dtype; }
  const Shape& shape() const { return view_.shape; }
  Device device() const { return view_.device; }
  int64_t numel() const { return view_.numel(); }
  size_t nbytes() const { return view_.nbytes(); }
  bool defined() const { return view_.data != nullptr; }

  // Same storage, another shape with as many elements.
  Tensor reshaped(Shape shape) const;
  // Rows [begin, end) of the first dimension, sharing storage.
  Tensor rows(int64_t begin, int64_t end) const;
  Tensor clone() const;
  // A copy converted to dtype (a clone when the dtype already matches).
  Tensor to(DType dtype) const;
  // A copy on `device` (a clone when already there); a copy to the host waits for the GPU.
  Tensor to_device(Device device) const;

 private:
  std::shared_ptr<void> storage_;
  View view_;
};

// The first element of a floating tensor that is NaN or ±inf: its index in the flattened tensor and
// its value. nullopt when every element is finite, and for integer tensors. One pass over the data
// (a GPU tensor is copied to the host first): what refuses a diverged run's tensors where they are
// loaded, saved or received, so a NaN never passes silently.
struct NonFiniteElement {
  int64_t index = 0;
  double value = 0;
};
std::optional<NonFiniteElement> find_non_finite(const Tensor& t);
// A value for messages: "nan" for every NaN (std::to_string writes "-nan" for some), "inf", "-inf",
// else the shortest of %g.
std::string value_text(double value);

// GPU memory held by tensors (not cuBLASLt's workspace or kernels' scratch):
// now, and the most at once since the last reset. What the training benchmark reports as peak memory.
struct GpuTensorMemory {
  size_t in_use = 0;
  size_t peak = 0;
};
GpuTensorMemory gpu_tensor_memory();
// Why tensors cannot live on the GPU here (a build without CUDA, no driver, no visible device), or
// "" when they can.
std::string gpu_unavailable_reason();
void reset_gpu_tensor_memory_peak();

}  // namespace fe
