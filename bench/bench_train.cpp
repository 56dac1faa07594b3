// bench_train — end-to-end LoRA training throughput on the GPU (bench/README.md).
//
// A Llama-shaped model with random bf16 weights in GPU memory, a LoRA adapter (fp32 master weights
// and AdamW state) and random tokens: `--warmup` optimizer steps, then `--steps` timed ones, each
// over --batch sequences of --seq tokens (in micro-batches of --micro-batch). Prints tokens/s, the
// model FLOP utilisation and the peak GPU memory held by tensors, then the same as one JSON line
// for bench/compare_hf_peft.py, which passes the shape flags below.
//
// Model FLOPs per token: 4·(matmul parameters) — the forward's 2 and the backward's 2 for dX; a LoRA
// step computes no dW for the base — plus attention's 2·T·H·hd forward and 5·T·H·hd backward
// (causal, FlashAttention's convention) per layer; LoRA's own products are left out. MFU divides
// the rate by --peak-tflops (default: the dense bf16 peak of an H100/H200; else not printed).
//
//   bench_train [--shape llama-100m|llama-400m|llama-1b] [--hidden D] [--layers L] [--heads H]
//               [--kv-heads K] [--ffn F] [--vocab V] [--seq T] [--batch B] [--micro-batch M]
//               [--rank R] [--alpha A] [--targets q_proj,k_proj,...] [--steps N] [--warmup N]
//               [--recompute] [--peak-tflops P]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>

#include "bench/bench_util.h"
#include "engine/rng.h"
#include "engine/trainer.h"
#include "kernels/elementwise.h"

namespace fe {
namespace {

using namespace bench;  // bench/bench_util.h

struct Shape4 {
  int64_t hidden, layers, heads, kv_heads, ffn, vocab;
};

const std::map<std::string, Shape4> kShapes = {  // as in bench/compare_hf_peft.py
    {"llama-100m", {768, 12, 12, 4, 2048, 32000}},
    {"llama-400m", {1024, 24, 16, 8, 2816, 32000}},
    {"llama-1b", {2048, 16, 32, 8, 8192, 32000}},
};

struct Args {
  Shape4 shape = kShapes.at("llama-1b");
  int64_t seq = 2048, batch = 4, micro_batch = 0, rank = 16;
  double alpha = 32, peak_tflops = 0;
  std::string targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
  int steps = 10, warmup = 2;
  bool recompute = false;
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "bench_train: %s\nusage: bench_train [--shape llama-100m|llama-400m|llama-1b] [--hidden D] [--layers L]\n"
               "  [--heads H] [--kv-heads K] [--ffn F] [--vocab V] [--seq T] [--batch B] [--micro-batch M]\n"
               "  [--rank R] [--alpha A] [--targets q_proj,...] [--steps N] [--warmup N] [--recompute]\n"
               "  [--peak-tflops P]\n",
               problem.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  const std::map<std::string, int64_t*> integers = {
      {"--hidden", &a.shape.hidden}, {"--layers", &a.shape.layers}, {"--heads", &a.shape.heads},
      {"--kv-heads", &a.shape.kv_heads}, {"--ffn", &a.shape.ffn}, {"--vocab", &a.shape.vocab},
      {"--seq", &a.seq}, {"--batch", &a.batch}, {"--micro-batch", &a.micro_batch}, {"--rank", &a.rank}};
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--recompute") {
      a.recompute = true;
      continue;
    }
    if (i + 1 >= argc) usage("missing a value after " + flag);
    const std::string value = argv[++i];
    char* end = nullptr;
    const double number = std::strtod(value.c_str(), &end);
    const bool numeric = end != value.c_str() && *end == '\0';
    if (flag == "--shape") {
      if (!kShapes.count(value)) usage("unknown shape " + value);
      a.shape = kShapes.at(value);
    } else if (flag == "--targets") {
      a.targets = value;
    } else if (!numeric) {
      usage(flag == "--alpha" || flag == "--peak-tflops" || integers.count(flag) || flag == "--steps" ||
                    flag == "--warmup"
                ? flag + " takes a number, got " + value
                : "unknown flag " + flag);
    } else if (integers.count(flag)) {
      *integers.at(flag) = static_cast<int64_t>(number);
    } else if (flag == "--alpha") {
      a.alpha = number;
    } else if (flag == "--peak-tflops") {
      a.peak_tflops = number;
    } else if (flag == "--steps") {
      a.steps = static_cast<int>(number);
    } else if (flag == "--warmup") {
      a.warmup = static_cast<int>(number);
    } else {
      usage("unknown flag " + flag);
    }
  }
  if (a.micro_batch == 0) a.micro_batch = a.batch;
  if (a.batch <= 0 || a.seq <= 1 || a.steps <= 0 || a.warmup < 0 || a.micro_batch <= 0 || a.batch % a.micro_batch)
    usage("--batch, --seq and --steps must be positive and --micro-batch must divide --batch");
  if (a.shape.heads <= 0 || a.shape.hidden % a.shape.heads) usage("--heads must divide --hidden");
  return a;
}

LlamaConfig model_config(const Args& a) {
  LlamaConfig c;
  c.hidden_size = a.shape.hidden;
  c.num_hidden_layers = a.shape.layers;
  c.num_attention_heads = a.shape.heads;
  c.num_key_value_heads = a.shape.kv_heads;
  c.head_dim = a.shape.hidden / a.shape.heads;
  c.intermediate_size = a.shape.ffn;
  c.vocab_size = a.shape.vocab;
  c.max_position_embeddings = std::max<int64_t>(a.seq, 2048);
  return c;
}

// HF's initialisation (normal(0, initializer_range) matrices, unit norms), drawn on the GPU: a 1B
// model drawn on the host would take longer than the benchmark.
LlamaWeights random_gpu_weights(const LlamaConfig& c) {
  uint64_t seed = 1;
  auto matrix = [&](int64_t rows, int64_t cols) {
    return random_gpu(Shape{rows, cols}, DType::bf16, seed++, c.initializer_range);
  };
  auto filled = [](int64_t n, double value) {
    Tensor t = Tensor::empty(Shape{n}, DType::bf16, Device::cuda);
    kernels::fill(t, value);
    return t;
  };
  LlamaWeights w;
  w.config = c;
  w.embed_tokens = matrix(c.vocab_size, c.hidden_size);
  w.layers.resize(c.num_hidden_layers);
  for (LlamaLayerWeights& layer : w.layers) {
    layer.input_layernorm = filled(c.hidden_size, 1.0);
    layer.post_attention_layernorm = filled(c.hidden_size, 1.0);
    for (Proj p : kAllProj) {
      const auto [out, in] = proj_shape(c, p);
      layer[p].weight = matrix(out, in);
      if (proj_has_bias(c, p)) layer[p].bias = filled(out, 0.0);
    }
  }
  w.norm = filled(c.hidden_size, 1.0);
  w.lm_head = c.tie_word_embeddings ? w.embed_tokens : matrix(c.vocab_size, c.hidden_size);
  return w;
}

LoraConfig lora_config(const Args& a) {
  LoraConfig l;
  l.rank = a.rank;
  l.alpha = a.alpha;
  l.targets.clear();
  std::stringstream names(a.targets);
  for (std::string name; std::getline(names, name, ',');) {
    const auto p = proj_from_name(name);
    if (!p) usage("unknown projection " + name + " in --targets");
    l.targets.push_back(*p);
  }
  return l;
}

std::vector<Batch> random_batches(const Args& a, int64_t vocab) {
  Rng rng(5);
  std::vector<Batch> batches;
  for (int64_t m = 0; m < a.batch / a.micro_batch; ++m) {
    Tensor ids = Tensor::empty(Shape{a.micro_batch, a.seq}, DType::i32);
    for (int64_t i = 0; i < ids.numel(); ++i) ids.as<int32_t>()[i] = static_cast<int32_t>(rng.next_u64() % vocab);
    batches.push_back({ids, ids});
  }
  return batches;
}

double model_flops_per_token(const LlamaConfig& c, int64_t seq) {
  double matmul_parameters = static_cast<double>(c.vocab_size) * c.hidden_size;  // lm_head
  for (Proj p : kAllProj) {
    const auto [out, in] = proj_shape(c, p);
    matmul_parameters += static_cast<double>(out) * in * c.num_hidden_layers;
  }
  const double attention = 7.0 * seq * c.num_attention_heads * c.head_dim * c.num_hidden_layers;
  return 4.0 * matmul_parameters + attention;
}

// Dense bf16 peaks: H100/H200 SXM 989 TFLOP/s, H100 PCIe 756; other devices need --peak-tflops.
double default_peak_tflops(const std::string& device) {
  const bool hopper = device.find("H100") != std::string::npos || device.find("H200") != std::string::npos;
  if (!hopper) return 0.0;
  return device.find("PCIe") != std::string::npos ? 756.0 : 989.0;
}

int run(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (no_gpu("bench_train")) return 0;
  const LlamaConfig c = model_config(a);
  const LlamaModel model(random_gpu_weights(c), {.recompute_activations = a.recompute});
  LoraAdapter adapter = LoraAdapter::init(c, lora_config(a), 3, DType::f32).to_device(Device::cuda);
  Trainer trainer(model, adapter, {.lr = 1e-4});
  const std::vector<Batch> batches = random_batches(a, c.vocab_size);
  cudaDeviceProp prop{};
  FE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs; %d warm-up and %d timed optimizer steps\n", prop.name, prop.multiProcessorCount,
              a.warmup, a.steps);
  std::printf("model: %lld parameters, D=%lld L=%lld H=%lld Hkv=%lld F=%lld V=%lld; seq %lld, batch %lld in micro-batches "
              "of %lld, LoRA r%lld on %s%s\n",
              static_cast<long long>(c.num_parameters()), static_cast<long long>(c.hidden_size),
              static_cast<long long>(c.num_hidden_layers), static_cast<long long>(c.num_attention_heads),
              static_cast<long long>(c.num_key_value_heads), static_cast<long long>(c.intermediate_size),
              static_cast<long long>(c.vocab_size), static_cast<long long>(a.seq), static_cast<long long>(a.batch),
              static_cast<long long>(a.micro_batch), static_cast<long long>(a.rank), a.targets.c_str(),
              a.recompute ? ", recomputed activations" : "");
  std::fflush(stdout);

  for (int s = 0; s < a.warmup; ++s) trainer.step(batches);
  FE_CUDA_CHECK(cudaDeviceSynchronize());
  reset_gpu_tensor_memory_peak();
  const auto start = std::chrono::steady_clock::now();
  StepStats stats;
  for (int s = 0; s < a.steps; ++s) stats = trainer.step(batches);  // reads the loss: waits for the GPU
  FE_CUDA_CHECK(cudaDeviceSynchronize());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const double tokens_per_s = static_cast<double>(a.batch * a.seq * a.steps) / seconds;
  const double tflops = tokens_per_s * model_flops_per_token(c, a.seq) / 1e12;
  const double peak = a.peak_tflops > 0 ? a.peak_tflops : default_peak_tflops(prop.name);
  const size_t memory = gpu_tensor_memory().peak;
  std::printf("%.1f ms/step, %.0f tokens/s, %.1f model TFLOP/s", 1e3 * seconds / a.steps, tokens_per_s, tflops);
  if (peak > 0) std::printf(", MFU %.1f%% of %.0f", 100 * tflops / peak, peak);
  std::printf(", peak tensor memory %.2f GiB, last loss %.4f\n", memory / 1073741824.0, stats.loss);
  std::printf("{\"tokens_per_s\": %.1f, \"peak_memory_bytes\": %zu, \"model_tflops\": %.2f, \"mfu\": %.4f, "
              "\"step_ms\": %.2f, \"loss\": %.5f}\n",
              tokens_per_s, memory, tflops, peak > 0 ? tflops / peak : 0.0, 1e3 * seconds / a.steps, stats.loss);
  return 0;
}

}  // namespace
}  // namespace fe

int main(int argc, char** argv) {
  return fe::bench::report_errors("bench_train", [&] { return fe::run(argc, argv); });
}
