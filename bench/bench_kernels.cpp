// bench_kernels — times the memory-bound CUDA kernels on Llama shapes against the device's copy
// bandwidth (bench/README.md).
//
// Each op runs through its public entry point (kernels/*.h) on the default stream, as the engine
// calls it: warm-up calls, then the median of --iters calls timed with CUDA events. Its bytes are
// the minimum it must move (each input read once, each output written once); GB/s is those bytes
// over the median time, and "of copy" divides it by the GB/s of a cudaMemcpyAsync device-to-device
// copy moving as many bytes (half read, half written), timed the same way in the same run.
//
//   bench_kernels [--iters N] [--only SUBSTRING]
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "engine/tensor.h"
#include "kernels/adamw.h"
#include "kernels/clip.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"

namespace fe {
namespace {

using namespace bench;  // bench/bench_util.h

struct Model {
  const char* name;
  int64_t hidden, intermediate, heads, kv_heads, head_dim, layers;
};

// Llama 3.2 1B and Llama 2 7B.
const Model kModels[] = {{"llama-1b", 2048, 8192, 32, 8, 64, 16}, {"llama-7b", 4096, 11008, 32, 32, 128, 32}};
const int64_t kTokens[] = {4096, 16384};
const int64_t kLoraRank = 16;

class Bench {
 public:
  explicit Bench(Options options) : options_(std::move(options)), meter_(timer_, options_.iters) {
    std::printf("%-34s %-22s", "kernel", "shape");
    print_bandwidth_header();
  }

  // Times fn, which moves `bytes`, against a device-to-device copy of the same traffic.
  void run(const std::string& name, const std::string& shape, double bytes, const std::function<void()>& fn) {
    if (!options_.selects(name)) return;
    const BandwidthMeter::Result result = meter_.measure(bytes, fn);
    std::printf("%-34s %-22s", name.c_str(), shape.c_str());
    print_bandwidth(result);
  }

 private:
  Options options_;
  Timer timer_;
  BandwidthMeter meter_;
};

double bytes_of(std::initializer_list<const Tensor*> tensors) {
  double total = 0;
  for (const Tensor* t : tensors) total += static_cast<double>(t->nbytes());
  return total;
}

std::string shape_name(int64_t tokens, int64_t dim) {
  return "N=" + std::to_string(tokens) + " D=" + std::to_string(dim);
}

// Activations: RMSNorm, RoPE, SwiGLU, embedding (bf16, the GPU's activation dtype).
void bench_activations(Bench& bench, const Model& m, int64_t tokens) {
  const DType bf16 = DType::bf16;
  const std::string prefix = std::string(m.name) + " ";
  const std::string shape = shape_name(tokens, m.hidden);

  Tensor x = random_gpu(Shape{tokens, m.hidden}, bf16, 1), w = random_gpu(Shape{m.hidden}, bf16, 2);
  Tensor y = Tensor::empty(x.shape(), bf16, Device::cuda), rstd = Tensor::empty(Shape{tokens}, bf16, Device::cuda);
  Tensor dy = random_gpu(x.shape(), bf16, 3), dx = random_gpu(x.shape(), bf16, 4);
  bench.run(prefix + "rmsnorm_forward", shape, bytes_of({&x, &w, &y, &rstd}),
            [&] { kernels::rmsnorm_forward(y, rstd, x, w, 1e-5); });
  bench.run(prefix + "rmsnorm_backward", shape, bytes_of({&dy, &x, &w, &rstd, &dx}),
            [&] { kernels::rmsnorm_backward(dx, View{}, dy, x, w, rstd, false); });
  bench.run(prefix + "rmsnorm_backward accumulate", shape, bytes_of({&dy, &x, &w, &rstd, &dx, &dx}),
            [&] { kernels::rmsnorm_backward(dx, View{}, dy, x, w, rstd, true); });
  Tensor dw = Tensor::zeros(w.shape(), bf16, Device::cuda);
  bench.run(prefix + "rmsnorm_backward +dw", shape, bytes_of({&dy, &x, &w, &rstd, &dx, &dw}),
            [&] { kernels::rmsnorm_backward(dx, dw, dy, x, w, rstd, false); });

  const int64_t half = m.head_dim / 2;
  Tensor positions = Tensor::empty(Shape{tokens}, DType::i32);
  for (int64_t n = 0; n < tokens; ++n) positions.as<int32_t>()[n] = static_cast<int32_t>(n % 4096);
  Tensor inv_freq = Tensor::empty(Shape{half}, DType::f64);
  for (int64_t i = 0; i < half; ++i) inv_freq.as<double>()[i] = std::pow(500000.0, -2.0 * i / m.head_dim);
  Tensor cos = Tensor::empty(Shape{tokens, half}, bf16, Device::cuda);
  Tensor sin = Tensor::empty(cos.shape(), bf16, Device::cuda);
  kernels::rope_tables(cos, sin, positions.to_device(Device::cuda), inv_freq.to_device(Device::cuda));
  Tensor q = random_gpu(Shape{tokens, m.heads, m.head_dim}, bf16, 5);
  Tensor k = random_gpu(Shape{tokens, m.kv_heads, m.head_dim}, bf16, 6);
  bench.run(prefix + "rope_apply q", shape, bytes_of({&q, &q, &cos, &sin}),
            [&] { kernels::rope_apply(q, cos, sin, false); });
  bench.run(prefix + "rope_apply k", shape, bytes_of({&k, &k, &cos, &sin}),
            [&] { kernels::rope_apply(k, cos, sin, false); });
  bench.run(prefix + "rope_apply q inverse", shape, bytes_of({&q, &q, &cos, &sin}),
            [&] { kernels::rope_apply(q, cos, sin, true); });

  const std::string mlp_shape = shape_name(tokens, m.intermediate);
  Tensor gate = random_gpu(Shape{tokens, m.intermediate}, bf16, 7), up = random_gpu(gate.shape(), bf16, 8);
  Tensor out = Tensor::empty(gate.shape(), bf16, Device::cuda), dout = random_gpu(gate.shape(), bf16, 9);
  Tensor dgate = Tensor::empty(gate.shape(), bf16, Device::cuda);
  Tensor dup = Tensor::empty(gate.shape(), bf16, Device::cuda);
  bench.run(prefix + "swiglu_forward", mlp_shape, bytes_of({&gate, &up, &out}),
            [&] { kernels::swiglu_forward(out, gate, up); });
  bench.run(prefix + "swiglu_backward", mlp_shape, bytes_of({&dout, &gate, &up, &dgate, &dup}),
            [&] { kernels::swiglu_backward(dgate, dup, dout, gate, up); });

  const int64_t vocab = 32000;
  Tensor table = random_gpu(Shape{vocab, m.hidden}, bf16, 10);
  Tensor ids_host = Tensor::empty(Shape{tokens}, DType::i32);
  for (int64_t n = 0; n < tokens; ++n) ids_host.as<int32_t>()[n] = static_cast<int32_t>((n * 7919) % vocab);
  const Tensor ids = ids_host.to_device(Device::cuda);
  // Includes the check of the ids on the host (a copy of N ids, which waits for the GPU).
  bench.run(prefix + "embedding_forward", shape, bytes_of({&ids, &y, &y}),
            [&] { kernels::embedding_forward(y, ids, table); });

  Tensor x32 = random_gpu(x.shape(), DType::f32, 11);
  bench.run(prefix + "convert f32->bf16", shape, bytes_of({&x32, &y}), [&] { kernels::convert(y, x32); });
  bench.run(prefix + "axpy bf16", shape, bytes_of({&y, &x, &y}), [&] { kernels::axpy(y, x, 1e-3); });
}

// The LoRA adapter of a model: A [r, in] and B [out, r] for q, k, v, o, gate, up, down per layer.
std::vector<Tensor> lora_tensors(const Model& m, uint64_t seed) {
  const int64_t q = m.heads * m.head_dim, kv = m.kv_heads * m.head_dim, r = kLoraRank;
  const std::pair<int64_t, int64_t> in_out[] = {{m.hidden, q}, {m.hidden, kv}, {m.hidden, kv}, {q, m.hidden},
                                                {m.hidden, m.intermediate}, {m.hidden, m.intermediate},
                                                {m.intermediate, m.hidden}};
  std::vector<Tensor> tensors;
  for (int64_t layer = 0; layer < m.layers; ++layer)
    for (const auto& [in, out] : in_out) {
      tensors.push_back(random_gpu(Shape{r, in}, DType::f32, seed++, 0.01));
      tensors.push_back(random_gpu(Shape{out, r}, DType::f32, seed++, 0.01));
    }
  return tensors;
}

// The optimizer and DP steps over a whole LoRA adapter (f32 master weights and state).
void bench_lora(Bench& bench, const Model& m) {
  const std::vector<Tensor> p = lora_tensors(m, 100), g = lora_tensors(m, 20000), mo = lora_tensors(m, 40000),
                            v = lora_tensors(m, 60000);
  for (const Tensor& t : v) kernels::fill(t, 1e-4);
  const std::vector<View> pv(p.begin(), p.end()), gv(g.begin(), g.end()), mv(mo.begin(), mo.end()),
      vv(v.begin(), v.end());
  double params = 0;
  for (const Tensor& t : p) params += static_cast<double>(t.numel());
  const std::string shape =
      std::to_string(p.size()) + " tensors " + std::to_string(static_cast<int64_t>(params / 1e6)) + "M";
  const std::string prefix = std::string(m.name) + " lora ";
  const kernels::AdamWHyper h{.lr = 1e-4, .weight_decay = 0.01};
  bench.run(prefix + "adamw_step_all", shape, params * 4 * 7,
            [&] { kernels::adamw_step_all(pv, gv, mv, vv, h, 10); });
  bench.run(prefix + "global_norm", shape, params * 4, [&] { kernels::global_norm(gv); });
  bench.run(prefix + "scale_all", shape, params * 4 * 2, [&] { kernels::scale_all(gv, 1.0); });
  // Noise on the adapter as one flat buffer (one call per tensor would be launch-bound).
  Tensor flat = Tensor::zeros(Shape{static_cast<int64_t>(params)}, DType::f32, Device::cuda);
  bench.run(prefix + "add_gaussian_noise (flat)", shape, params * 4 * 2,
            [&] { kernels::add_gaussian_noise(flat, 1e-3, 7, 0); });
}

int run(int argc, char** argv) {
  Options options;
  if (!parse_options(argc, argv, options, argv[0])) return 2;
  if (no_gpu(argv[0])) return 0;
  print_device(options);
  Bench bench(options);
  for (const Model& m : kModels) {
    for (int64_t tokens : kTokens) bench_activations(bench, m, tokens);
    bench_lora(bench, m);
  }
  return 0;
}

}  // namespace
}  // namespace fe

int main(int argc, char** argv) {
  return fe::bench::report_errors("bench_kernels", [&] { return fe::run(argc, argv); });
}
