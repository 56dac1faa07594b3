// Issue 3's acceptance run, end to end on the CPU: generate the synthetic tasks, pretrain a small
// base on "copy" (full-parameter), then train a LoRA adapter on the new "shift" task. Exact match
// on held-out prompts must go from near 0 to a clear majority. Takes ~15 s on 2 cores.
#include <gtest/gtest.h>

#include <sstream>

#include "engine/synthetic_data.h"
#include "engine/train_run.h"
#include "tests/test_files.h"
#include "tests/test_util.h"

namespace fe {
namespace {

// configs/tiny-llama.json's shape: it learns the copy task reliably across seeds.
LlamaConfig small_base() {
  return test::tiny_llama({.hidden = 128, .intermediate = 352, .layers = 2, .heads = 8, .kv_heads = 4, .head_dim = 16,
                           .vocab = 320, .tied = true, .rope_theta = 100.0});
}

TrainConfig task_config(const test::TempDir& dir, const std::string& model, const std::string& task,
                        const std::string& output) {
  TrainConfig c;
  c.model_dir = dir.path(model);
  c.tokenizer_path = dir.path("data/tokenizer.model");
  c.train_file = dir.path("data/" + task + "/train.jsonl");
  c.eval_file = dir.path("data/" + task + "/eval.jsonl");
  c.micro_batch_size = 32;
  c.optimizer.lr = 3e-3;
  c.optimizer.schedule = LrSchedule::cosine;
  c.optimizer.warmup_steps = 10;
  c.eval.max_generate_examples = 50;
  c.eval.sampling.max_new_tokens = 8;
  c.output_dir = dir.path(output);
  c.log_every = 50;
  return c;
}

TEST(TrainingAcceptance, LoraLearnsANewTaskOnHeldOutPrompts) {
  test::TempDir dir;
  SyntheticOptions data;
  data.train_examples = 3000;
  data.eval_examples = 100;
  write_synthetic_suite(dir.path("data"), data);
  LlamaWeights::random(small_base(), 0, DType::f32).save(dir.path("random-base"), DType::f32);
  test::write_file(dir.path("random-base/generation_config.json"), R"({"eos_token_id": 2})");
  std::ostringstream log;

  TrainConfig pretrain = task_config(dir, "random-base", "copy", "pretrain");
  pretrain.full_parameter = true;
  pretrain.steps = 400;
  pretrain.optimizer.max_grad_norm = 1.0;
  pretrain.optimizer.total_steps = pretrain.steps;
  const TrainSummary base = run_training(pretrain, log);
  EXPECT_GE(base.after.accuracy(), 0.9) << log.str();

  TrainConfig lora = task_config(dir, "pretrain/model", "shift", "lora");
  lora.lora.rank = 8;
  lora.lora.alpha = 16;
  lora.lora.targets.assign(kAllProj.begin(), kAllProj.end());
  lora.steps = 150;
  lora.optimizer.total_steps = lora.steps;
  const TrainSummary tuned = run_training(lora, log);
  EXPECT_LE(tuned.before.accuracy(), 0.05) << log.str();
  EXPECT_GE(tuned.after.accuracy(), 0.6) << log.str();
  EXPECT_EQ(tuned.after.examples, 100);  // every eval example's loss, exact match on max_examples
  EXPECT_EQ(tuned.after.generated_examples, 50);
  EXPECT_TRUE(std::filesystem::exists(dir.path("lora/adapter/adapter_model.safetensors")));
  // The base's generation settings travel with each saved result, full model and adapter alike.
  EXPECT_TRUE(std::filesystem::exists(dir.path("pretrain/model/generation_config.json")));
  EXPECT_TRUE(std::filesystem::exists(dir.path("lora/adapter/generation_config.json")));
  std::cout << "copy pretraining: " << describe(base.before) << " -> " << describe(base.after) << "\n"
            << "shift LoRA:       " << describe(tuned.before) << " -> " << describe(tuned.after) << "\n";
}

}  // namespace
}  // namespace fe
