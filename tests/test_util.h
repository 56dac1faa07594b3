// tests/test_util.h — shared helpers: random tensors, finite-difference gradient checks, temp dirs.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/llama_config.h"
#include "engine/rng.h"
#include "engine/tensor.h"

namespace fe::test {

inline Tensor random_tensor(Shape shape, Rng& rng, double scale = 1.0, DType dtype = DType::f64) {
  Tensor t = Tensor::empty(shape, dtype);
  rng.fill_normal(t, 0.0, scale);
  return t;
}

inline double element(const Tensor& t, int64_t i) {
  return t.dtype() == DType::f64 ? t.as<double>()[i] : t.as<float>()[i];
}

// ||a − b|| / ||b||: the comparison used throughout (robust to individual near-zero elements).
inline double relative_error(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.numel(), b.numel());
  double diff = 0, ref = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = element(a, i) - element(b, i);
    diff += d * d;
    ref += element(b, i) * element(b, i);
  }
  return std::sqrt(diff) / std::max(std::sqrt(ref), 1e-300);
}

// Central differences of the scalar `loss` with respect to every element (or every `stride`-th
// element) of the f64 tensor x, compared with the analytic gradient `grad`.
inline void expect_gradient(const std::string& what, const Tensor& x, const Tensor& grad,
                            const std::function<double()>& loss, double tolerance = 1e-7,
                            int64_t stride = 1) {
  ASSERT_EQ(x.dtype(), DType::f64) << what;
  ASSERT_EQ(x.numel(), grad.numel()) << what;
  const double h = 1e-6;
  double diff = 0, ref = 0;
  for (int64_t i = 0; i < x.numel(); i += stride) {
    double& xi = x.as<double>()[i];
    const double saved = xi;
    xi = saved + h;
    const double up = loss();
    xi = saved - h;
    const double down = loss();
    xi = saved;
    const double numeric = (up - down) / (2 * h);
    const double analytic = grad.as<double>()[i];
    diff += (numeric - analytic) * (numeric - analytic);
    ref += numeric * numeric;
  }
  ASSERT_GT(ref, 0) << what << ": the numeric gradient is all zero, the check would prove nothing";
  EXPECT_LT(std::sqrt(diff / ref), tolerance) << what;
}

// Σ y ⊙ r: a scalar loss whose gradient with respect to y is r.
inline double weighted_sum(const Tensor& y, const Tensor& r) {
  double s = 0;
  for (int64_t i = 0; i < y.numel(); ++i) s += element(y, i) * element(r, i);
  return s;
}

// A small Llama shape; tests name only what they vary.
struct TinyLlama {
  int64_t hidden = 32, intermediate = 64, layers = 1, heads = 4, kv_heads = 2, head_dim = 8, vocab = 32;
  double init = 0.02;
  bool tied = false;
  double rope_theta = 10000.0;
};

inline LlamaConfig tiny_llama(const TinyLlama& t) {
  LlamaConfig c;
  c.hidden_size = t.hidden;
  c.intermediate_size = t.intermediate;
  c.num_hidden_layers = t.layers;
  c.num_attention_heads = t.heads;
  c.num_key_value_heads = t.kv_heads;
  c.head_dim = t.head_dim;
  c.vocab_size = t.vocab;
  c.initializer_range = t.init;
  c.tie_word_embeddings = t.tied;
  c.rope_theta = t.rope_theta;
  c.rms_norm_eps = 1e-5;
  return c;
}

// prefix + i ("c3"), spelled so that GCC 12's -Wrestrict false positive on "literal" + string&&
// stays quiet.
#ifdef FE_CLI_PATH
// The fedengine binary the CLI and federation tests run: $FEDENGINE_CLI where set (a bundle run
// on another machine, whose build directory is not this one's), else the one built beside the tests.
inline std::string cli_path() {
  const char* set = std::getenv("FEDENGINE_CLI");
  return set && *set ? set : FE_CLI_PATH;
}
#endif

inline std::string numbered(const char* prefix, int64_t i) {
  std::string name = prefix;
  name += std::to_string(i);
  return name;
}

// A TCP port that was free a moment ago (the kernel's pick for port 0 on loopback). Another
// process may take it before the caller binds; tests that bind it retry or accept that rare race.
inline int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("free_tcp_port: no port");
  return ntohs(address.sin_port);
}

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("fedengine_") + (info ? info->test_suite_name() + std::string("_") + info->name() : "test");
    for (char& c : name)
      if (c == '/') c = '_';
    path_ = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string path(const std::string& child = "") const { return child.empty() ? path_.string() : (path_ / child).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace fe::test
