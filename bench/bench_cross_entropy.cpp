// bench_cross_entropy — times the CUDA cross-entropy (kernels/cross_entropy.h) on the LM head's
// output, and the DP-SGD per-example LoRA norms (kernels::lora_per_example_sq_norms), on the GPU.
//
// Cross-entropy: N = 4096 rows of bf16 logits, V = 32000 (Llama 2) and 128256 (Llama 3). With the
// gradient the op must read the logits twice (max/sum, then softmax) and write the gradient once:
// 3·N·V·2 bytes; loss only reads them once. GB/s is those bytes over the median time (CUDA events,
// after warm-up), and "of copy" divides it by the GB/s of a cudaMemcpyAsync device-to-device copy
// moving as many bytes (half read, half written), timed the same way in the same run. Every call
// includes the copy of the loss to the host and the wait for it, as the engine sees it.
//
// Per-example norms: Llama-7B projections (in = 4096, out = 4096 and 11008, and the down
// projection 11008 → 4096), rank 16, 4096 tokens as B = 8 sequences of 512, bf16 activations, f32
// LoRA B. Reported as time and the fp32 FMA rate M·r·(2·out + in) / time (compute-bound).
//
//   bench_cross_entropy [--iters N] [--only SUBSTRING]
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "engine/tensor.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/linear.h"

namespace fe {
namespace {

using namespace bench;  // bench/bench_util.h

void bench_cross_entropy(const Options& options, Timer& timer) {
  std::printf("%-40s", "cross_entropy (bf16)");
  print_bandwidth_header();
  const int64_t rows = 4096;
  for (int64_t vocab : {int64_t{32000}, int64_t{128256}}) {
    Tensor logits = random_gpu(Shape{rows, vocab}, DType::bf16, 1, 2.0);
    Tensor pristine = logits.clone();
    Tensor dlogits = Tensor::empty(logits.shape(), DType::bf16, Device::cuda);
    Tensor targets_host = Tensor::empty(Shape{rows}, DType::i32);
    for (int64_t n = 0; n < rows; ++n)
      targets_host.as<int32_t>()[n] = n % 7 == 6 ? kernels::kIgnoreIndex : static_cast<int32_t>((n * 7919) % vocab);
    const Tensor targets = targets_host.to_device(Device::cuda);
    const double logit_bytes = static_cast<double>(logits.nbytes());
    BandwidthMeter meter(timer, options.iters);
    struct Run {
      std::string name;
      double bytes;
      std::function<void()> fn;
    };
    const std::string shape = "N=" + std::to_string(rows) + " V=" + std::to_string(vocab);
    const std::vector<Run> runs = {
        {shape + " loss+grad", 3 * logit_bytes,
         [&] { kernels::cross_entropy(dlogits, logits, targets, 1.0 / rows); }},
        // In place, as the engine calls it; the logits become gradients after the first call, which
        // changes the values but not the work.
        {shape + " loss+grad in place", 3 * logit_bytes,
         [&] { kernels::cross_entropy(logits, logits, targets, 1.0 / rows); }},
        {shape + " loss only", logit_bytes, [&] { kernels::cross_entropy(View{}, pristine, targets, 1.0); }},
    };
    for (const Run& run : runs) {
      if (!options.selects(run.name)) continue;
      // The copy in chunks of at most the logits' size.
      const BandwidthMeter::Result result = meter.measure(run.bytes, run.fn, logits.nbytes());
      std::printf("%-40s", run.name.c_str());
      print_bandwidth(result);
    }
  }
}

void bench_ghost_norms(const Options& options, Timer& timer) {
  std::printf("\n%-40s %10s %10s %9s\n", "lora_per_example_sq_norms", "GFMA", "time us", "TFMA/s");
  const int64_t examples = 8, seq = 512, rows = examples * seq, rank = 16;
  const std::pair<int64_t, int64_t> in_out[] = {{4096, 4096}, {4096, 11008}, {11008, 4096}};
  uint64_t seed = 10;
  for (const auto& [in, out] : in_out) {
    const std::string name = "B=8 T=512 r=16 in=" + std::to_string(in) + " out=" + std::to_string(out);
    if (!options.selects(name)) continue;
    const Tensor x = random_gpu(Shape{rows, in}, DType::bf16, seed++);
    const Tensor dy = random_gpu(Shape{rows, out}, DType::bf16, seed++, 1e-3);
    const Tensor xa = random_gpu(Shape{rows, rank}, DType::bf16, seed++);
    const Tensor a = random_gpu(Shape{rank, in}, DType::f32, seed++, 0.01);
    const Tensor b = random_gpu(Shape{out, rank}, DType::f32, seed++, 0.01);
    Tensor norms = Tensor::zeros(Shape{examples}, DType::f64);
    const double ms = timer.median_ms(
        [&] { kernels::lora_per_example_sq_norms(norms, dy, x, xa, kernels::LoraBranch{a, b, 2.0}); },
        options.iters);
    const double gfma = static_cast<double>(rows) * rank * (2 * out + in) / 1e9;
    std::printf("%-40s %10.2f %10.1f %9.1f\n", name.c_str(), gfma, ms * 1e3, gfma / ms);
    std::fflush(stdout);
  }
}

int run(int argc, char** argv) {
  Options options;
  if (!parse_options(argc, argv, options, argv[0])) return 2;
  if (no_gpu(argv[0])) return 0;
  print_device(options);
  Timer timer;
  bench_cross_entropy(options, timer);
  bench_ghost_norms(options, timer);
  return 0;
}

}  // namespace
}  // namespace fe

int main(int argc, char** argv) {
  return fe::bench::report_errors("bench_cross_entropy", [&] { return fe::run(argc, argv); });
}
