// kernels/view.h — the non-owning tensor view every op takes.
//
// A View is a pointer plus dtype, shape and device. Views are always contiguous and row-major; ops
// read the sizes they need from the shape and check them with detail::OpCheck, so a mismatch is
// reported with the op's name and every argument's dtype, shape and device. Ownership lives in
// engine/tensor.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "core/error.h"

namespace fe {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64 };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);   // "f32", "bf16", ...
bool is_floating(DType dtype);
const char* device_name(Device device);

class Shape {
 public:
  static constexpr int kMaxRank = 5;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  template <class It>
  Shape(It first, It last) {
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[i < 0 ? i + rank_ : i]; }
  int64_t numel() const;
  void push_back(int64_t d);
  const int64_t* begin() const { return dims_; }
  const int64_t* end() const { return dims_ + rank_; }
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[2, 3, 4]"

 private:
  int64_t dims_[kMaxRank] = {};
  int rank_ = 0;
};

struct View {
  void* data = nullptr;
  DType dtype = DType::f32;
  Shape shape;
  Device device = Device::cpu;

  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  bool empty() const { return data == nullptr; }
  template <class T>
  T* as() const { return static_cast<T*>(data); }
  std::string str() const;  // "f32[2, 3]@cpu"
  // Same storage, new shape with the same number of elements.
  View reshaped(Shape s) const;
};

namespace detail {

// Checks an op's arguments; a failed check throws Error("op: what; x=f32[2, 3]@cpu, w=...") so the
// message names the operation and every argument's dtype, shape and device.
class OpCheck {
 public:
  OpCheck(const char* op, std::initializer_list<std::pair<const char*, const View*>> args);
  void require(bool cond, const char* what) const {
    if (!cond) fail(what);
  }
  // All views live on one device.
  void require_same_device() const { require(devices_match_, "all arguments must be on one device"); }
  // All floating views share one dtype (f32 or f64 on the CPU) and live on one device.
  void require_same_float_dtype() const;
  [[noreturn]] void fail(const std::string& what) const;

 private:
  const char* op_;
  std::string args_;
  DType first_dtype_ = DType::f32;
  bool dtypes_match_ = true;
  bool devices_match_ = true;
};

}  // namespace detail
}  // namespace fe
