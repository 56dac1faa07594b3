// bench_linear — the LoRA linear layer against the base GEMM alone, on Llama shapes (bench/README.md).
//
// bf16 activations and weights, LoRA rank 16, M = 4096 and 16384 tokens, in→out = 2048→2048
// (attention projections of Llama 3.2 1B), 2048→8192 (gate/up) and 8192→2048 (down). For each:
//   forward:  base   y = x·Wᵀ                        (kernels::gemm)
//             lora   y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, xa kept   (kernels::linear_forward)
//   backward: base   dx = dy·W                        (the only base GEMM of a LoRA step's backward)
//             lora   dx, dA and dB (f32, accumulated)  (kernels::linear_backward)
// Median of --iters calls timed with CUDA events after warm-up; TFLOP/s counts every product the
// call computes (2·M·in·out for the base, plus 2·M·r·(in + out) per LoRA GEMM pair); "vs base" is
// the LoRA call's time over the base GEMM's. The target is at most 1.15.
//
//   bench_linear [--iters N] [--only SUBSTRING]
#include <cstdio>
#include <string>

#include "bench/bench_util.h"
#include "engine/tensor.h"
#include "kernels/linear.h"

namespace fe {
namespace {

using namespace bench;  // bench/bench_util.h

const int64_t kTokens[] = {4096, 16384};
const std::pair<int64_t, int64_t> kInOut[] = {{2048, 2048}, {2048, 8192}, {8192, 2048}};
const int64_t kRank = 16;
const double kTarget = 1.15;

void print_row(const std::string& name, const std::string& shape, double flops, double ms, double base_ms) {
  const double ratio = ms / base_ms;
  std::printf("%-16s %-28s %10.1f %9.1f %9.3f %s\n", name.c_str(), shape.c_str(), ms * 1e3, flops / ms / 1e9,
              ratio, base_ms == ms ? "" : (ratio <= kTarget ? "ok" : "over target"));
  std::fflush(stdout);
}

void bench_layer(Timer& timer, const Options& options, int64_t m, int64_t in, int64_t out) {
  const std::string shape =
      "M=" + std::to_string(m) + " " + std::to_string(in) + "->" + std::to_string(out) + " r=" + std::to_string(kRank);
  if (!options.selects(shape)) return;
  const DType bf16 = DType::bf16;
  const Tensor x = random_gpu(Shape{m, in}, bf16, 1), w = random_gpu(Shape{out, in}, bf16, 2, 0.02);
  const Tensor a = random_gpu(Shape{kRank, in}, bf16, 3, 0.02), b = random_gpu(Shape{out, kRank}, bf16, 4, 0.02);
  const Tensor dy = random_gpu(Shape{m, out}, bf16, 5, 1e-3);
  Tensor y = Tensor::empty(Shape{m, out}, bf16, Device::cuda), xa = Tensor::empty(Shape{m, kRank}, bf16, Device::cuda);
  Tensor dx = Tensor::empty(Shape{m, in}, bf16, Device::cuda);
  Tensor da = Tensor::zeros(a.shape(), DType::f32, Device::cuda), db = Tensor::zeros(b.shape(), DType::f32, Device::cuda);
  const kernels::LoraBranch lora{a, b, 2.0};

  const double base_flops = 2.0 * m * in * out;
  const double lora_pair = 2.0 * m * kRank * (in + out);  // x·Aᵀ then ·Bᵀ (or their two backward terms)

  const double fwd_base = timer.median_ms([&] { kernels::gemm(y, x, false, w, true, 1.0, 0.0); }, options.iters);
  print_row("fwd base gemm", shape, base_flops, fwd_base, fwd_base);
  const double fwd_lora =
      timer.median_ms([&] { kernels::linear_forward(y, xa, x, w, View{}, lora); }, options.iters);
  print_row("fwd lora linear", shape, base_flops + lora_pair, fwd_lora, fwd_base);

  const double bwd_base = timer.median_ms([&] { kernels::gemm(dx, dy, false, w, false, 1.0, 0.0); }, options.iters);
  print_row("bwd base gemm", shape, base_flops, bwd_base, bwd_base);
  kernels::LinearGrads grads;
  grads.dx = dx;
  grads.da = da;
  grads.db = db;
  const double bwd_lora = timer.median_ms([&] { kernels::linear_backward(grads, dy, x, xa, w, lora); }, options.iters);
  print_row("bwd lora linear", shape, base_flops + 2 * lora_pair, bwd_lora, bwd_base);
}

int run(int argc, char** argv) {
  Options options;
  if (!parse_options(argc, argv, options, argv[0])) return 2;
  if (no_gpu(argv[0])) return 0;
  print_device(options, "; bf16, fp32 accumulation");
  std::printf("%-16s %-28s %10s %9s %9s\n", "op", "shape", "time us", "TFLOP/s", "vs base");
  Timer timer;
  for (int64_t m : kTokens)
    for (const auto& [in, out] : kInOut) bench_layer(timer, options, m, in, out);
  return 0;
}

}  // namespace
}  // namespace fe

int main(int argc, char** argv) {
  return fe::bench::report_errors("bench_linear", [&] { return fe::run(argc, argv); });
}
