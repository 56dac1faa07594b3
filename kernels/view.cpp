#include "kernels/view.h"

#include <sstream>

namespace fe {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "?";
}

bool is_floating(DType dtype) { return dtype != DType::i32 && dtype != DType::i64; }

const char* device_name(Device device) { return device == Device::cpu ? "cpu" : "cuda"; }

Shape::Shape(std::initializer_list<int64_t> dims) {
  for (int64_t d : dims) push_back(d);
}

void Shape::push_back(int64_t d) {
  if (rank_ == kMaxRank) throw Error("Shape: more than " + std::to_string(kMaxRank) + " dimensions");
  if (d < 0) throw Error("Shape: negative dimension " + std::to_string(d));
  dims_[rank_++] = d;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (rank_ != o.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (dims_[i] != o.dims_[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream s;
  s << '[';
  for (int i = 0; i < rank_; ++i) s << (i ? ", " : "") << dims_[i];
  s << ']';
  return s.str();
}

std::string View::str() const {
  if (empty()) return "(none)";
  return std::string(dtype_name(dtype)) + shape.str() + "@" + device_name(device);
}

View View::reshaped(Shape s) const {
  if (s.numel() != numel())
    throw Error("View::reshaped: " + str() + " cannot be viewed as " + s.str());
  View v = *this;
  v.shape = s;
  return v;
}

namespace detail {

OpCheck::OpCheck(const char* op, std::initializer_list<std::pair<const char*, const View*>> args)
    : op_(op) {
  bool seen_float = false, seen_any = false;
  Device device = Device::cpu;
  for (const auto& [name, view] : args) {
    if (!args_.empty()) args_ += ", ";
    args_ += std::string(name) + "=" + view->str();
    if (view->empty()) continue;
    if (seen_any && view->device != device) devices_match_ = false;
    device = view->device;
    seen_any = true;
    if (!is_floating(view->dtype)) continue;
    if (seen_float && view->dtype != first_dtype_) dtypes_match_ = false;
    if (!seen_float) first_dtype_ = view->dtype;
    seen_float = true;
  }
}

void OpCheck::require_same_float_dtype() const {
  require_same_device();
  require(dtypes_match_, "all floating arguments must share one dtype");
}

void OpCheck::fail(const std::string& what) const {
  throw Error(std::string(op_) + ": " + what + "; " + args_);
}

}  // namespace detail
}  // namespace fe
