// Data parallelism inside a participant: R Gloo ranks on shares of each global batch train exactly
// what one rank trains on the whole batch (the rank-invariance acceptance test).
#include <gtest/gtest.h>

#include <thread>

#include "engine/trainer.h"
#include "tests/test_util.h"
#include "tests/training_util.h"

namespace fe {
namespace {

using test::relative_error;

LlamaConfig small_config() { return test::tiny_llama({.layers = 2, .vocab = 41, .init = 0.2}); }

using test::random_batch;

LoraAdapter starting_adapter(const LlamaConfig& c) { return test::lora_on_every_projection(c, DType::f32); }

struct TrainedRun {
  std::vector<double> losses;
  LoraAdapter adapter;
};

// `steps` optimizer steps, each over global micro-batches of `rows` rows (grad_accum of them),
// on rank `rank` of `ranks` (null: alone).
TrainedRun train(const OptimizerOptions& options, int64_t rows, int64_t grad_accum, Communicator* ranks) {
  const LlamaConfig c = small_config();
  const LlamaModel model(LlamaWeights::random(c, 1, DType::f32));
  TrainedRun run{{}, starting_adapter(c)};
  Trainer trainer(model, run.adapter, options, ranks);
  const std::vector<Tensor> anchor = [&] {
    std::vector<Tensor> copies;
    for (const auto& [name, t] : run.adapter.named_tensors()) copies.push_back(t.clone());
    return copies;
  }();
  trainer.set_proximal_term(0.1, anchor);
  for (uint64_t step = 0; step < 3; ++step) {
    std::vector<Batch> shares;
    for (int64_t m = 0; m < grad_accum; ++m) {
      const Batch global = random_batch(rows, 7, c.vocab_size, 100 * step + m);
      shares.push_back(ranks ? rank_share(global, ranks->rank(), ranks->size()) : global);
    }
    run.losses.push_back(trainer.step(shares).loss);
  }
  return run;
}

std::vector<TrainedRun> train_on_gloo_ranks(int world, const OptimizerOptions& options, int64_t rows, int64_t grad_accum) {
  const int port = test::free_tcp_port();
  std::vector<TrainedRun> runs(world);
  std::vector<std::string> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        const RankInfo info{.rank = r, .world_size = world, .local_rank = r, .local_world_size = world, .master_port = port};
        const auto ranks = connect_ranks(CommBackend::gloo, info, std::chrono::seconds(20));
        runs[r] = train(options, rows, grad_accum, ranks.get());
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  return runs;
}

void expect_same_training(const TrainedRun& alone, const TrainedRun& rank) {
  ASSERT_EQ(rank.losses.size(), alone.losses.size());
  for (size_t s = 0; s < alone.losses.size(); ++s) EXPECT_NEAR(rank.losses[s], alone.losses[s], 1e-5 * alone.losses[s]) << "step " << s;
  const auto a = rank.adapter.named_tensors(), b = alone.adapter.named_tensors();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LT(relative_error(a[i].second, b[i].second), 1e-5) << a[i].first;
}

const OptimizerOptions kAdamW{.lr = 2e-2, .weight_decay = 0.01, .schedule = LrSchedule::cosine, .warmup_steps = 1,
                              .total_steps = 3, .max_grad_norm = 0.5};

TEST(DataParallel, TwoGlooRanksOnHalfBatchesTrainLikeOneRankOnTheWholeBatch) {
  const TrainedRun alone = train(kAdamW, 4, 1, nullptr);
  const std::vector<TrainedRun> ranks = train_on_gloo_ranks(2, kAdamW, 4, 1);
  for (const TrainedRun& rank : ranks) expect_same_training(alone, rank);
  // Training moved the adapter: the comparison is not between untouched copies.
  EXPECT_GT(relative_error(alone.adapter.named_tensors()[1].second, starting_adapter(small_config()).named_tensors()[1].second), 1e-3);
}

TEST(DataParallel, UnevenSharesAndGradientAccumulation) {
  // 5 rows over 3 ranks (shares of 1, 2 and 2 rows), two micro-batches per step.
  const TrainedRun alone = train(kAdamW, 5, 2, nullptr);
  for (const TrainedRun& rank : train_on_gloo_ranks(3, kAdamW, 5, 2)) expect_same_training(alone, rank);
}

TEST(DataParallel, MoreRanksThanRowsLeavesSomeRanksIdle) {
  const TrainedRun alone = train(kAdamW, 1, 1, nullptr);
  for (const TrainedRun& rank : train_on_gloo_ranks(2, kAdamW, 1, 1)) expect_same_training(alone, rank);
}

TEST(DataParallel, DpSgdNoiseIsAddedOnceWhateverTheRanks) {
  OptimizerOptions dp = kAdamW;
  dp.dp_sgd = {.clip_norm = 0.05, .noise_multiplier = 0.8, .seed = 5};
  const TrainedRun alone = train(dp, 4, 1, nullptr);
  for (const TrainedRun& rank : train_on_gloo_ranks(2, dp, 4, 1)) expect_same_training(alone, rank);
}

TEST(DataParallel, RankShareCoversEveryRowOnce) {
  const Batch global = random_batch(5, 3, 41, 1);
  int64_t next_row = 0;
  for (int r = 0; r < 3; ++r) {
    const Batch share = rank_share(global, r, 3);
    EXPECT_EQ(share.input_ids.data(), global.input_ids.rows(next_row, next_row).data());
    next_row += share.input_ids.shape()[0];
  }
  EXPECT_EQ(next_row, 5);
  EXPECT_THROW(rank_share(global, 3, 3), Error);
}

}  // namespace
}  // namespace fe
