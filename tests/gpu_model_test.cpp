// The whole model and the trainer on the GPU against the CPU engine: a bf16 model in GPU memory
// computes the loss, the LoRA gradients, the per-example norms of DP-SGD and whole training runs
// that the f32 CPU engine computes on the same bf16-rounded weights, so only the arithmetic
// differs. Data parallelism with NCCL is checked against one rank. Skipped without a GPU.
#include <gtest/gtest.h>

#include <barrier>
#include <functional>
#include <thread>

#include "engine/communicator.h"
#include "engine/trainer.h"
#include "kernels/elementwise.h"
#include "tests/gpu_util.h"
#include "tests/training_util.h"

namespace fe {
namespace {

using test::relative_error;

// head_dim 64: the GPU attention kernel takes 64 or 128.
LlamaConfig gpu_config() {
  return test::tiny_llama({.hidden = 128, .intermediate = 256, .layers = 2, .heads = 2, .kv_heads = 1,
                           .head_dim = 64, .vocab = 300, .init = 0.05});
}

// What both engines start from: values rounded to bf16 (the GPU's storage and compute copies) and
// widened back, so the CPU reference sees exactly the GPU's weights.
LlamaWeights rounded_weights(const LlamaConfig& c) {
  return LlamaWeights::random(c, 11, DType::f32).converted(DType::bf16).converted(DType::f32);
}
LoraAdapter rounded_adapter(const LlamaConfig& c) {
  return test::lora_on_every_projection(c, DType::f32).converted(DType::bf16).converted(DType::f32);
}
LlamaWeights on_gpu(const LlamaWeights& w) { return w.converted(DType::bf16).to_device(Device::cuda); }

Tensor flattened(const LoraAdapter& adapter) {
  int64_t total = 0;
  for (const auto& [name, t] : adapter.named_tensors()) total += t.numel();
  Tensor flat = Tensor::empty(Shape{total}, DType::f64);
  int64_t offset = 0;
  for (const auto& [name, t] : adapter.named_tensors()) {
    kernels::copy(flat.rows(offset, offset + t.numel()), test::host_f64(t).reshaped(Shape{t.numel()}));
    offset += t.numel();
  }
  return flat;
}

// Every matrix within `per_tensor` (a wrong projection is off by ~1) and all of them together
// within `overall` (relative L2). Calibration (tools/bf16_tolerance.py): PyTorch on the CPU, this
// config and batch, bf16
// weights and activations with fp32 matmul accumulation against fp32, puts the loss 5e-5 apart
// and the LoRA gradients 0.9% apart overall, 1.7% for the worst matrix; the tolerances below
// leave about 3x (overall) and 6x (per matrix) of room.
void expect_close_adapters(const LoraAdapter& gpu, const LoraAdapter& cpu, double overall, double per_tensor,
                           const std::string& what) {
  const auto g = gpu.named_tensors(), c = cpu.named_tensors();
  ASSERT_EQ(g.size(), c.size());
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_LT(relative_error(test::host_f64(g[i].second), c[i].second.to(DType::f64)), per_tensor)
        << what << " " << g[i].first;
  EXPECT_LT(relative_error(flattened(gpu), flattened(cpu)), overall) << what;
}

TEST(GpuModel, LossAndLoraGradientsMatchTheCpuEngine) {
  FE_REQUIRE_GPU();
  const LlamaConfig c = gpu_config();
  const LlamaWeights weights = rounded_weights(c);
  const LoraAdapter lora = rounded_adapter(c);
  const Batch batch = test::random_batch(2, 64, c.vocab_size, 3);
  const double grad_scale = 1.0 / static_cast<double>(count_label_tokens(batch.labels));

  for (const bool recompute : {false, true}) {
    const ModelOptions options{.recompute_activations = recompute, .logits_chunk_rows = 48};
    const LlamaModel cpu_model(weights, options);
    LoraAdapter cpu_grads = lora.zeros_like();
    const LossSum cpu = cpu_model.forward_backward(batch.input_ids, batch.labels, &lora, &cpu_grads, grad_scale);

    const LlamaModel gpu_model(on_gpu(weights), options);
    const LoraAdapter gpu_lora = lora.to_device(Device::cuda);  // f32 masters; the model computes in bf16
    LoraAdapter gpu_grads = gpu_lora.zeros_like();
    const LossSum gpu = gpu_model.forward_backward(batch.input_ids, batch.labels, &gpu_lora, &gpu_grads, grad_scale);

    EXPECT_EQ(gpu.tokens, cpu.tokens);
    EXPECT_NEAR(gpu.mean(), cpu.mean(), 1e-2 * cpu.mean()) << "recompute " << recompute;
    EXPECT_EQ(gpu_grads.dtype(), DType::f32);
    expect_close_adapters(gpu_grads, cpu_grads, 3e-2, 1e-1, recompute ? "recomputed" : "kept activations");
  }
}

TEST(GpuModel, LogitsAndCachedDecodingMatchTheCpuEngine) {
  FE_REQUIRE_GPU();
  const LlamaConfig c = gpu_config();
  const LlamaWeights weights = rounded_weights(c);
  const LoraAdapter lora = rounded_adapter(c);
  const LlamaModel cpu_model(weights), gpu_model(on_gpu(weights));
  const LoraAdapter gpu_lora = lora.to_device(Device::cuda);
  const Batch batch = test::random_batch(2, 24, c.vocab_size, 4);

  const Tensor cpu_logits = cpu_model.logits(batch.input_ids, &lora);
  const Tensor gpu_logits = gpu_model.logits(batch.input_ids, &gpu_lora);
  EXPECT_EQ(gpu_logits.device(), Device::cuda);
  test::expect_close(gpu_logits, cpu_logits, DType::bf16, 2e-2, "logits");

  // A prompt of 9 tokens, then 3 single tokens against the cache.
  KvCache cpu_cache = cpu_model.new_kv_cache(16), gpu_cache = gpu_model.new_kv_cache(16);
  const Tensor tokens = batch.input_ids.rows(0, 1).reshaped(Shape{24});
  for (int64_t begin = 0, end = 9; end <= 12; begin = end++) {
    const Tensor ids = tokens.rows(begin, end).reshaped(Shape{1, end - begin});
    test::expect_close(gpu_model.decode(ids, gpu_cache, &gpu_lora), cpu_model.decode(ids, cpu_cache, &lora),
                       DType::bf16, 2e-2, test::numbered("decoded logits after token ", end));
  }
}

TEST(GpuModel, PerExampleNormsAndWeightedGradientsMatchTheCpuEngine) {
  FE_REQUIRE_GPU();
  const LlamaConfig c = gpu_config();
  const LlamaWeights weights = rounded_weights(c);
  const LoraAdapter lora = rounded_adapter(c);
  const LlamaModel cpu_model(weights, {.logits_chunk_rows = 40}), gpu_model(on_gpu(weights), {.logits_chunk_rows = 40});
  const LoraAdapter gpu_lora = lora.to_device(Device::cuda);
  const Batch batch = test::random_batch(3, 32, c.vocab_size, 5);
  const std::vector<double> example_weights = {0.03, 0.05, 0.02};

  const std::vector<double> cpu_norms = cpu_model.per_example_lora_sq_norms(batch.input_ids, batch.labels, &lora, example_weights);
  const std::vector<double> gpu_norms = gpu_model.per_example_lora_sq_norms(batch.input_ids, batch.labels, &gpu_lora, example_weights);
  ASSERT_EQ(gpu_norms.size(), cpu_norms.size());
  // Squared norms of one example's gradient: twice its relative error, over fewer tokens.
  for (size_t b = 0; b < cpu_norms.size(); ++b) EXPECT_NEAR(gpu_norms[b], cpu_norms[b], 6e-2 * cpu_norms[b]) << "example " << b;

  LoraAdapter cpu_grads = lora.zeros_like(), gpu_grads = gpu_lora.zeros_like();
  cpu_model.forward_backward_per_example(batch.input_ids, batch.labels, &lora, &cpu_grads, example_weights);
  gpu_model.forward_backward_per_example(batch.input_ids, batch.labels, &gpu_lora, &gpu_grads, example_weights);
  expect_close_adapters(gpu_grads, cpu_grads, 3e-2, 1e-1, "weighted gradient");
}

// ---- training -------------------------------------------------------------------------------

struct TrainedRun {
  std::vector<double> losses;
  LoraAdapter adapter;  // on the host
};

// SGD keeps the comparison linear in the gradients (Adam's normalised steps turn a gradient
// element near zero into ±lr on either engine); clipping, FedProx and DP-SGD's clipping and
// noise all take part.
OptimizerOptions parity_options(bool dp_sgd) {
  OptimizerOptions o{.kind = OptimizerKind::sgd, .lr = 0.5, .schedule = LrSchedule::cosine, .warmup_steps = 1,
                     .total_steps = 4, .max_grad_norm = 0.5};
  if (dp_sgd) o.dp_sgd = {.clip_norm = 0.05, .noise_multiplier = 0.5, .seed = 9};
  return o;
}

// Three steps over global batches of `rows` rows, on `device`, as rank `ranks->rank()` of its
// world (null: alone). The model, adapter and FedProx anchor live on `device`.
TrainedRun train(Device device, const OptimizerOptions& options, int64_t rows, Communicator* ranks) {
  const LlamaConfig c = gpu_config();
  const LlamaWeights weights = rounded_weights(c);
  const LlamaModel model(device == Device::cuda ? on_gpu(weights) : weights);
  LoraAdapter adapter = rounded_adapter(c).to_device(device);
  Trainer trainer(model, adapter, options, ranks);
  std::vector<Tensor> anchor;
  for (const auto& [name, t] : adapter.named_tensors()) anchor.push_back(t.clone());
  trainer.set_proximal_term(0.1, anchor);
  TrainedRun run;
  for (uint64_t step = 0; step < 3; ++step) {
    const Batch global = test::random_batch(rows, 48, c.vocab_size, 100 + step);
    const Batch share = ranks ? rank_share(global, ranks->rank(), ranks->size()) : global;
    run.losses.push_back(trainer.step(std::span(&share, 1)).loss);
  }
  run.adapter = adapter.to_device(Device::cpu);
  return run;
}

// The change training made, which is what the engines must agree on (the starting adapter is
// shared and would hide a wrong update in a comparison of whole matrices).
LoraAdapter trained_delta(const TrainedRun& run) {
  LoraAdapter delta = run.adapter.converted(DType::f32);
  const LoraAdapter start = rounded_adapter(gpu_config());
  const auto d = delta.named_tensors(), s = start.named_tensors();
  for (size_t i = 0; i < d.size(); ++i) kernels::axpy(d[i].second, s[i].second, -1.0);
  return delta;
}

void expect_same_training(const TrainedRun& got, const TrainedRun& want, double tolerance, const std::string& what) {
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (size_t s = 0; s < want.losses.size(); ++s)
    EXPECT_NEAR(got.losses[s], want.losses[s], tolerance * want.losses[s]) << what << ", step " << s;
  expect_close_adapters(trained_delta(got), trained_delta(want), 3 * tolerance, 10 * tolerance, what);
}

// Data parallelism on the GPU with one rank: the GPU trainer of a participant whose world is one
// GPU (connect_ranks gives a world of one the single-rank communicator, whatever the backend)
// trains what the CPU trainer trains, which DataParallel.* shows is what any number of Gloo ranks
// train.
TEST(GpuTrainer, OneGpuRankTrainsLikeTheCpuTrainer) {
  FE_REQUIRE_GPU();
  const std::unique_ptr<Communicator> ranks = connect_ranks(CommBackend::nccl, RankInfo{});
  for (const bool dp_sgd : {false, true}) {
    const TrainedRun cpu = train(Device::cpu, parity_options(dp_sgd), 4, nullptr);
    const TrainedRun gpu = train(Device::cuda, parity_options(dp_sgd), 4, ranks.get());
    expect_same_training(gpu, cpu, 1e-2, dp_sgd ? "DP-SGD" : "SGD with clipping and FedProx");
  }
}

// Two ranks as two threads of this process, on one device: an all-reduce meets the other thread
// and sums through host memory. With it one GPU exercises the trainer's gradient buckets in GPU
// memory, which a world of one skips.
class ThreadRanks {
 public:
  class Rank : public Communicator {
   public:
    Rank(ThreadRanks& world, int rank) : world_(world), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return 2; }
    CommBackend backend() const override { return CommBackend::single; }
    void all_reduce_sum(const View& data) override {
      Tensor staging = Tensor::empty(data.shape, data.dtype);
      kernels::copy(staging, data);
      std::vector<double>& mine = world_.values_[rank_];
      mine.resize(data.numel());
      kernels::convert(View{mine.data(), DType::f64, data.shape, Device::cpu}, staging);
      world_.meet_.arrive_and_wait();
      std::vector<double> sum(mine.size());
      for (size_t i = 0; i < sum.size(); ++i) sum[i] = world_.values_[0][i] + world_.values_[1][i];
      world_.meet_.arrive_and_wait();  // both have read before either writes again
      kernels::convert(staging, View{sum.data(), DType::f64, data.shape, Device::cpu});
      kernels::copy(data, staging);
    }
    void broadcast(std::span<std::byte>, int) override { throw Error("ThreadRanks: broadcast is not used here"); }
    void barrier() override { world_.meet_.arrive_and_wait(); }

   private:
    ThreadRanks& world_;
    int rank_;
  };

 private:
  std::barrier<> meet_{2};
  std::vector<double> values_[2];
};

// Two ranks, threads of this process, each with the communicator connect(rank), on shares of
// every global batch against one rank on the whole batch. The arithmetic is the same but on fewer
// rows, for which cuBLASLt may sum in another order and move a bf16 result by its last bit now and
// then; a missing all-reduce is off by ~50%.
void expect_two_ranks_train_like_one(Device device, const std::function<std::unique_ptr<Communicator>(int)>& connect,
                                     const char* what) {
  const TrainedRun alone = train(device, parity_options(false), 5, nullptr);
  std::vector<TrainedRun> runs(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      try {
        const std::unique_ptr<Communicator> ranks = connect(r);
        runs[r] = train(device, parity_options(false), 5, ranks.get());
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(errors[r], "") << what << r;
    if (errors[r].empty()) expect_same_training(runs[r], alone, 5e-3, test::numbered(what, r));
  }
}

void expect_two_thread_ranks_train_like_one(Device device) {
  ThreadRanks world;
  expect_two_ranks_train_like_one(
      device, [&](int r) { return std::make_unique<ThreadRanks::Rank>(world, r); }, "thread rank ");
}

TEST(GpuTrainer, GradientBucketsInGpuMemorySumOverRanks) {
  FE_REQUIRE_GPU();
  expect_two_thread_ranks_train_like_one(Device::cuda);
}

// The same on the CPU, where it checks the test's own reasoning on every machine.
TEST(GpuTrainer, TwoThreadRanksTrainLikeOneOnTheCpu) { expect_two_thread_ranks_train_like_one(Device::cpu); }

// Two NCCL ranks, one GPU each, on half batches train what one GPU trains on whole batches.
TEST(GpuTrainer, TwoNcclRanksOnHalfBatchesTrainLikeOneGpu) {
  FE_REQUIRE_GPU();
  if (!comm_backend_available(CommBackend::nccl))
    GTEST_SKIP() << "built without NCCL (libnccl was not found at configure time)";
#ifdef FE_HAVE_CUDA
  if (cuda::device_count() < 2)
    GTEST_SKIP() << "NCCL with 2 ranks needs 2 GPUs; this machine has " << cuda::device_count();
#endif
  const int port = test::free_tcp_port();
  expect_two_ranks_train_like_one(
      Device::cuda,
      [&](int r) {
        const RankInfo info{.rank = r, .world_size = 2, .local_rank = r, .local_world_size = 2, .master_port = port};
        return connect_ranks(CommBackend::nccl, info, std::chrono::seconds(30));  // selects GPU r
      },
      "NCCL rank ");
}

}  // namespace
}  // namespace fe
