// bench_attention — times the CUDA flash-attention kernels (kernels/cuda/attention.cu) through their
// public entry points (kernels/attention.h) on training shapes: bf16, 16384 tokens as B = 8
// sequences of T = 2048, causal, GQA, and one Mistral-style sliding window (W = 512).
//
// Each op: warm-up calls, then the median of --iters calls timed with CUDA events on the default
// stream. TFLOP/s counts the causal FLOPs of the math, not of our recomputation: the forward's two
// products Q Kᵀ and P V over the lower triangle, 2·B·H·T²·hd, and the backward's five (S and dP
// recomputed, dV, dQ, dK), 5·B·H·T²·hd, the FlashAttention papers' convention. (Our backward
// recomputes S and dP in both the dq and the dk/dv kernel, so it executes 7/5 of that.) With a
// window W the T²/2 visible (query, key) pairs become Σᵢ min(i + 1, W).
//
//   bench_attention [--iters N]
#include <algorithm>
#include <cstdio>

#include "bench/bench_util.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "kernels/attention.h"

namespace fe {
namespace {

using namespace bench;  // bench/bench_util.h

struct Shape4 {
  const char* name;
  int64_t batch, seq, heads, kv_heads, head_dim;
  int64_t window = 0;  // 0: full causal
};

// Llama 3.2 1B's attention (hd 64) at 16k tokens, Llama 2 7B's (hd 128, no GQA), and Mistral 7B's
// (hd 128, GQA 4) with a window of a quarter of the sequence.
const Shape4 kShapes[] = {
    {"llama-1b", 8, 2048, 32, 8, 64}, {"llama-7b", 8, 2048, 32, 32, 128}, {"mistral-w512", 8, 2048, 32, 8, 128, 512}};

// (query, key) pairs a sequence computes: T²/2 causal (the papers' convention), Σᵢ min(i + 1, W)
// with a window.
double visible_pairs(const Shape4& s) {
  if (s.window == 0) return 0.5 * static_cast<double>(s.seq) * s.seq;
  double pairs = 0;
  for (int64_t i = 0; i < s.seq; ++i) pairs += static_cast<double>(std::min(i + 1, s.window));
  return pairs;
}

// Drawn on the host (one Rng stream for all the inputs), rounded to bf16: unlike random_gpu.
Tensor random_device(Shape shape, Rng& rng) {
  Tensor host = Tensor::empty(shape, DType::f32);
  rng.fill_normal(host, 0.0, 1.0);
  return host.to(DType::bf16).to_device(Device::cuda);
}

int run(int argc, char** argv) {
  Options options;
  options.iters = 10;
  if (!parse_options(argc, argv, options, "bench_attention", /*accepts_only=*/false)) return 2;
  if (no_gpu("bench_attention")) return 0;
  std::printf("%-12s %6s %6s %4s %4s %4s %5s  %10s %8s  %10s %8s\n", "shape", "B", "T", "H", "Hkv", "hd", "W", "fwd ms",
              "TFLOP/s", "bwd ms", "TFLOP/s");
  Timer timer;
  Rng rng(7);
  for (const Shape4& s : kShapes) {
    const Shape qs{s.batch, s.seq, s.heads, s.head_dim}, kvs{s.batch, s.seq, s.kv_heads, s.head_dim};
    const Tensor q = random_device(qs, rng), k = random_device(kvs, rng), v = random_device(kvs, rng);
    const Tensor dout = random_device(qs, rng);
    Tensor out = Tensor::empty(qs, DType::bf16, Device::cuda);
    Tensor lse = Tensor::empty(Shape{s.batch, s.heads, s.seq}, DType::f32, Device::cuda);
    Tensor dq = Tensor::empty(qs, DType::bf16, Device::cuda);
    Tensor dk = Tensor::empty(kvs, DType::bf16, Device::cuda), dv = Tensor::empty(kvs, DType::bf16, Device::cuda);

    const double fwd_ms =
        timer.median_ms([&] { kernels::attention_forward(out, lse, q, k, v, s.window); }, options.iters);
    const double bwd_ms = timer.median_ms(
        [&] { kernels::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, s.window); }, options.iters);
    // B·H·T²·hd when causal: the FLOPs of one product over the visible pairs, halved.
    const double unit = 2 * static_cast<double>(s.batch) * s.heads * visible_pairs(s) * s.head_dim;
    std::printf("%-12s %6lld %6lld %4lld %4lld %4lld %5lld  %10.3f %8.2f  %10.3f %8.2f\n", s.name,
                static_cast<long long>(s.batch), static_cast<long long>(s.seq), static_cast<long long>(s.heads),
                static_cast<long long>(s.kv_heads), static_cast<long long>(s.head_dim),
                static_cast<long long>(s.window), fwd_ms, 2 * unit / (fwd_ms * 1e9), bwd_ms, 5 * unit / (bwd_ms * 1e9));
  }
  return 0;
}

}  // namespace
}  // namespace fe

int main(int argc, char** argv) {
  return fe::bench::report_errors("bench_attention", [&] { return fe::run(argc, argv); });
}
