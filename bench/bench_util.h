// bench/bench_util.h — what the CUDA microbenchmarks share (bench/README.md): options, timing, the
// copy-bandwidth yardstick, random inputs, and main's error handling. Header-only; namespace
// fe::bench.
//
//   Options{iters, only}, parse_options(argc, argv, options, program, accepts_only)
//       --iters N (at least 1) and --only SUBSTRING; anything else prints
//       "usage: PROGRAM [--iters N] [--only SUBSTRING]" and the bench exits 2.
//       options.selects(name): no --only, or name contains it.
//   no_gpu(program)          where no CUDA device is visible, prints "PROGRAM: no CUDA device on this
//                            machine" and returns true (the bench then exits 0).
//   print_device(options, extra)  "device: NAME, N SMs; median of I calls<extra>".
//   Timer::median_ms(fn, iters)   3 warm-up calls of fn, then the median of `iters` calls, each
//                            timed with CUDA events on the default stream.
//   BandwidthMeter::measure(bytes, fn, max_copy_chunk)
//                            times fn, which must move `bytes`, then a cudaMemcpyAsync device-to-
//                            device copy moving as many (half read, half written, in chunks of at
//                            most max_copy_chunk bytes), timed the same way; GB/s of both.
//   print_bandwidth_header(), print_bandwidth(result)
//                            the columns "MB moved, time us, GB/s, copy GB/s, of copy" after the
//                            caller's own label columns.
//   random_gpu(shape, dtype, seed, scale)  N(0, scale) values drawn on the GPU.
//   report_errors(program, fn)    main's body: fn's exit status, or "PROGRAM: what" and 1 on an
//                            exception.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "kernels/clip.h"
#include "kernels/cuda/check.h"

namespace fe::bench {

struct Options {
  int iters = 20;
  std::string only;

  bool selects(const std::string& name) const { return only.empty() || name.find(only) != std::string::npos; }
};

// Reads the command line into `options`, which holds the defaults. False (usage printed) on
// anything it does not know, --only included where !accepts_only.
inline bool parse_options(int argc, char** argv, Options& options, const char* program, bool accepts_only = true) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--iters" && i + 1 < argc) {
      options.iters = std::max(1, std::atoi(argv[++i]));
    } else if (accepts_only && arg == "--only" && i + 1 < argc) {
      options.only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--iters N]%s\n", program, accepts_only ? " [--only SUBSTRING]" : "");
      return false;
    }
  }
  return true;
}

inline bool no_gpu(const char* program) {
  if (cuda::device_count() != 0) return false;
  std::printf("%s: no CUDA device on this machine\n", program);
  return true;
}

inline void print_device(const Options& options, const char* extra = "") {
  cudaDeviceProp prop{};
  FE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs; median of %d calls%s\n", prop.name, prop.multiProcessorCount, options.iters,
              extra);
}

class Timer {
 public:
  Timer() {
    FE_CUDA_CHECK(cudaEventCreate(&start_));
    FE_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~Timer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Median milliseconds of one call of fn, after warm-up calls.
  double median_ms(const std::function<void()>& fn, int iters) {
    for (int i = 0; i < 3; ++i) fn();
    std::vector<float> times;
    for (int i = 0; i < iters; ++i) {
      FE_CUDA_CHECK(cudaEventRecord(start_, 0));
      fn();
      FE_CUDA_CHECK(cudaEventRecord(stop_, 0));
      FE_CUDA_CHECK(cudaEventSynchronize(stop_));
      float ms = 0;
      FE_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
      times.push_back(ms);
    }
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    return times[times.size() / 2];
  }

 private:
  cudaEvent_t start_{}, stop_{};
};

// A memory-bound op against the device's copy bandwidth, measured in the same run. The copy's
// buffers are its own and grow to the largest chunk asked for.
class BandwidthMeter {
 public:
  struct Result {
    double bytes, ms, gbps, copy_gbps;
  };

  BandwidthMeter(Timer& timer, int iters) : timer_(timer), iters_(iters) {}

  Result measure(double bytes, const std::function<void()>& fn, size_t max_copy_chunk = SIZE_MAX) {
    const double ms = timer_.median_ms(fn, iters_);
    const double copy = copy_ms(bytes, max_copy_chunk);
    return {bytes, ms, bytes / ms / 1e6, bytes / copy / 1e6};
  }

 private:
  // A copy moving `bytes`: bytes / 2 read and as many written.
  double copy_ms(double bytes, size_t max_chunk) {
    const size_t half = static_cast<size_t>(bytes / 2);
    const size_t chunk = std::min(half, max_chunk);
    if (src_.nbytes() < chunk) {
      src_ = Tensor::empty(Shape{static_cast<int64_t>(chunk + 3) / 4}, DType::i32, Device::cuda);
      dst_ = Tensor::empty(src_.shape(), src_.dtype(), Device::cuda);
    }
    return timer_.median_ms(
        [&] {
          for (size_t done = 0; done < half; done += chunk)
            FE_CUDA_CHECK(cudaMemcpyAsync(dst_.data(), src_.data(), std::min(chunk, half - done),
                                          cudaMemcpyDeviceToDevice, 0));
        },
        iters_);
  }

  Timer& timer_;
  int iters_;
  Tensor src_, dst_;
};

inline void print_bandwidth_header() {
  std::printf(" %10s %10s %9s %9s %8s\n", "MB moved", "time us", "GB/s", "copy GB/s", "of copy");
}

inline void print_bandwidth(const BandwidthMeter::Result& r) {
  std::printf(" %10.1f %10.1f %9.0f %9.0f %7.0f%%\n", r.bytes / 1e6, r.ms * 1e3, r.gbps, r.copy_gbps,
              100 * r.gbps / r.copy_gbps);
  std::fflush(stdout);
}

// GPU tensor of N(0, scale) values, drawn on the GPU.
inline Tensor random_gpu(Shape shape, DType dtype, uint64_t seed, double scale = 1.0) {
  Tensor t = Tensor::zeros(shape, dtype, Device::cuda);
  kernels::add_gaussian_noise(t, scale, seed, 0);
  return t;
}

template <class Fn>
int report_errors(const char* program, Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace fe::bench
