// What stops a training run from passing NaN on silently or from asking for impossible sizes:
// non-finite tensors refused where they are loaded, trained and saved (issue 18, item 8), and the
// settings the model's shape bounds refused with the key, the value and the allowed range (item 9).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/generate.h"
#include "engine/safetensors.h"
#include "engine/train_config.h"
#include "engine/train_run.h"
#include "tests/test_files.h"
#include "tests/test_util.h"
#include "tests/training_util.h"

namespace fe {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

// The default tiny shape: hidden 32, q 32, k and v 16, MLP 64, so LoRA ranks up to 16 fit every projection.
LlamaConfig tiny(int64_t layers = 1) { return test::tiny_llama({.layers = layers, .vocab = 32, .init = 0.2}); }

void write_config_json(const std::string& dir, const nlohmann::json& config) {
  fs::create_directories(dir);
  test::write_file(fs::path(dir) / "config.json", config.dump(2));
}

// A model directory written without LlamaWeights::save (which refuses non-finite tensors).
void write_model_unchecked(const LlamaWeights& weights, const std::string& dir) {
  write_config_json(dir, weights.config.to_json());
  write_named_tensors((fs::path(dir) / "model.safetensors").string(), weights.named_tensors());
}

TEST(NonFiniteTensors, FindNonFiniteNamesTheFirstBadElementOfEveryFloatType) {
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    Tensor t = Tensor::zeros(Shape{2, 3}, DType::f64);
    EXPECT_FALSE(find_non_finite(t.to(dtype)).has_value()) << dtype_name(dtype);
    t.as<double>()[4] = -std::numeric_limits<double>::infinity();
    t.as<double>()[5] = std::nan("");
    const auto bad = find_non_finite(t.to(dtype));
    ASSERT_TRUE(bad.has_value()) << dtype_name(dtype);
    EXPECT_EQ(bad->index, 4) << dtype_name(dtype);
    EXPECT_TRUE(std::isinf(bad->value) && bad->value < 0) << dtype_name(dtype);
  }
  EXPECT_FALSE(find_non_finite(Tensor::zeros(Shape{4}, DType::i32)).has_value());
}

TEST(NonFiniteTensors, ABaseModelWithANanWeightIsRefusedWhenLoadedAndNeverSaved) {
  test::TempDir dir;
  LlamaWeights weights = LlamaWeights::random(tiny(), 1, DType::f32);
  weights.layers[0][Proj::q].weight.as<float>()[5] = kNan;

  const std::string saved = dir.path("saved");
  const std::string refused = test::error_of<Error>([&] { weights.save(saved, DType::f32); });
  EXPECT_THAT(refused, HasSubstr(saved));
  EXPECT_THAT(refused, HasSubstr("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_FALSE(fs::exists(fs::path(saved) / "model.safetensors"));

  const std::string model = dir.path("model");
  write_model_unchecked(weights, model);
  const std::string error = test::error_of<Error>([&] { LlamaWeights::load(model, DType::f32); });
  EXPECT_THAT(error, HasSubstr(model));
  EXPECT_THAT(error, HasSubstr("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_THAT(error, HasSubstr("element 5 is nan"));
}

TEST(NonFiniteTensors, ANanAdapterIsRefusedWhenLoadedAndNeverSavedOverAGoodOne) {
  test::TempDir dir;
  const LlamaConfig config = tiny();
  LoraAdapter adapter = test::lora_on_every_projection(config, DType::f32);
  const std::string good = dir.path("adapter");
  adapter.save_peft(good);
  const std::string weights_file = (fs::path(good) / kPeftWeightsFile).string();
  const std::string good_bytes = test::read_file(weights_file);

  adapter.at(0, Proj::v).b.as<float>()[2] = std::numeric_limits<float>::infinity();
  const std::string refused = test::error_of<Error>([&] { adapter.save_peft(good); });
  EXPECT_THAT(refused, HasSubstr(peft_name(0, Proj::v, true)));
  EXPECT_EQ(test::read_file(weights_file), good_bytes);

  // What merge and aggregate read their adapters through.
  write_named_tensors(weights_file, adapter.named_tensors());
  const std::string error = test::error_of<Error>([&] { LoraAdapter::load_peft(good, config, DType::f32); });
  EXPECT_THAT(error, HasSubstr(weights_file));
  EXPECT_THAT(error, HasSubstr(peft_name(0, Proj::v, true)));
  EXPECT_THAT(error, HasSubstr("element 2 is inf"));
  EXPECT_THAT(test::error_of<Error>([&] { read_named_tensors(weights_file); }), HasSubstr(peft_name(0, Proj::v, true)));
}

TEST(NonFiniteTensors, RequireFiniteNamesTheTensorAboutToBeWritten) {
  Tensor ok = Tensor::zeros(Shape{3}, DType::f32), bad = Tensor::zeros(Shape{3}, DType::f32);
  bad.as<float>()[1] = kNan;
  EXPECT_NO_THROW(require_finite(NamedTensors{{"a", ok}}, "out/adapter"));
  const std::string error = test::error_of<Error>([&] {
    require_finite(NamedTensors{{"a", ok}, {"b", bad}}, "out/adapter");
  });
  EXPECT_THAT(error, HasSubstr("out/adapter"));
  EXPECT_THAT(error, HasSubstr("'b' element 1 is nan"));
}

TEST(NonFiniteTensors, ANonPositiveRmsNormEpsIsAConfigError) {
  for (double eps : {-1.0, 0.0}) {
    nlohmann::json j = tiny().to_json();
    j["rms_norm_eps"] = eps;
    const std::string error = test::error_of<Error>([&] { LlamaConfig::from_json(j, "m/config.json"); });
    EXPECT_THAT(error, HasSubstr("m/config.json"));
    EXPECT_THAT(error, HasSubstr("rms_norm_eps"));
    EXPECT_THAT(error, HasSubstr("> 0"));
  }
}

TEST(NonFiniteTraining, ANanLossStopsTheStepNamingItBeforeTheUpdate) {
  const LlamaConfig config = tiny();
  LlamaWeights weights = LlamaWeights::random(config, 2, DType::f32);
  weights.lm_head.as<float>()[0] = kNan;
  const LlamaModel model(weights);
  LoraAdapter adapter = test::lora_on_every_projection(config, DType::f32);
  const NamedTensors before = adapter.converted(DType::f32).named_tensors();
  Trainer trainer(model, adapter, {.lr = 1e-3});
  const std::string error =
      test::error_of<Error>([&] { trainer.step(std::vector<Batch>{test::random_batch(2, 6, config.vocab_size, 3)}); });
  EXPECT_THAT(error, HasSubstr("training step 1: the loss is nan"));
  for (size_t i = 0; i < before.size(); ++i)  // no update was applied
    EXPECT_EQ(test::relative_error(adapter.named_tensors()[i].second.to(DType::f64), before[i].second.to(DType::f64)),
              0.0);
}

TEST(NonFiniteTraining, AnUpdateThatOverflowsStopsTheStep) {
  const LlamaConfig config = tiny();
  const LlamaModel model(LlamaWeights::random(config, 2, DType::f32));
  LoraAdapter adapter = test::lora_on_every_projection(config, DType::f32);
  Trainer trainer(model, adapter, {.kind = OptimizerKind::sgd, .lr = 1e300});
  const std::string error =
      test::error_of<Error>([&] { trainer.step(std::vector<Batch>{test::random_batch(2, 6, config.vocab_size, 3)}); });
  EXPECT_THAT(error, HasSubstr("training step 1:"));
  EXPECT_THAT(error, HasSubstr("train.lr"));
}

// A run that diverges ends with an Error and leaves the adapter of the earlier good run in place.
TEST(NonFiniteTraining, ADivergingRunFailsAndKeepsTheEarlierAdapter) {
  test::TempDir dir;
  LlamaWeights::random(tiny(), 3, DType::f32).save(dir.path("base"), DType::f32);
  std::string records;
  for (int i = 0; i < 8; ++i)
    records +=
        "{\"input_ids\": [1, " + std::to_string(3 + i) + ", 20, 21, 22], \"labels\": [-100, -100, 20, 21, 22]}\n";
  test::write_file(dir.path("train.jsonl"), records);
  TrainConfig c;
  c.model_dir = dir.path("base");
  c.train_file = dir.path("train.jsonl");
  c.data.format = DataFormat::tokenized;
  c.steps = 3;
  c.micro_batch_size = 4;
  c.optimizer.lr = 1e-3;
  c.optimizer.total_steps = c.steps;
  c.output_dir = dir.path("out");
  std::ostringstream log;
  const TrainSummary good = run_training(c, log);
  EXPECT_TRUE(std::isfinite(good.final_train_loss)) << log.str();
  const std::string adapter_file = dir.path("out/adapter/adapter_model.safetensors");
  const std::string good_bytes = test::read_file(adapter_file);
  ASSERT_FALSE(good_bytes.empty()) << log.str();

  c.optimizer.lr = 1e300;
  const std::string error = test::error_of<Error>([&] { run_training(c, log); });
  EXPECT_THAT(error, HasSubstr("training step "));
  EXPECT_EQ(test::read_file(adapter_file), good_bytes);
}

// A YAML config training on a model directory whose config.json declares 8 positions.
class ModelBoundSettings : public ::testing::Test {
 protected:
  std::string write_config(const std::string& sections) {
    LlamaConfig model = tiny();
    model.max_position_embeddings = 8;
    write_config_json(dir_.path("base"), model.to_json());
    test::write_file(dir_.path("train.jsonl"), "{\"input_ids\": [1, 2, 3]}\n");
    test::write_file(dir_.path("cfg.yaml"), "model: base\ntokenizer: null\noutput: {dir: out}\n" + sections);
    return dir_.path("cfg.yaml");
  }
  TrainConfig read_config(const std::string& sections) {
    return read_train_config(ConfigNode::load_file(write_config(sections)));
  }
  std::string error_of_config(const std::string& sections) {
    return test::error_of<Error>([&] { read_config(sections); });
  }
  test::TempDir dir_;
};

TEST_F(ModelBoundSettings, GradAccumStepsBeyondTheSequencesAStepCanHoldIsRefused) {
  const std::string error =
      error_of_config("data: {train: train.jsonl}\ntrain: {grad_accum_steps: 9223372036854775807}\n");
  EXPECT_THAT(error, HasSubstr("cfg.yaml"));
  EXPECT_THAT(error, HasSubstr("train.grad_accum_steps"));
  EXPECT_THAT(error, HasSubstr("9223372036854775807"));
  EXPECT_THAT(error, HasSubstr("allowed 1 to 1048576"));
  EXPECT_EQ(read_config("data: {train: train.jsonl}\ntrain: {micro_batch_size: 1024, grad_accum_steps: 1024}\n")
                .grad_accum_steps,
            1024);
}

TEST_F(ModelBoundSettings, ALoraRankBeyondTheLayerDimensionsIsRefused) {
  const std::string error = error_of_config("data: {train: train.jsonl}\nadapter: {rank: 1000000}\n");
  EXPECT_THAT(error, HasSubstr("adapter.rank"));
  EXPECT_THAT(error, HasSubstr("1000000"));
  EXPECT_THAT(error, HasSubstr("allowed 1 to 16"));
  EXPECT_EQ(read_config("data: {train: train.jsonl}\nadapter: {rank: 16}\n").lora.rank, 16);
  // k_proj and v_proj are 16 wide; the MLP alone allows 32.
  EXPECT_EQ(read_config("data: {train: train.jsonl}\nadapter: {rank: 32, targets: [up_proj, down_proj]}\n").lora.rank,
            32);
}

TEST_F(ModelBoundSettings, MaxNewTokensBeyondTheModelsPositionsIsRefused) {
  const std::string error = error_of_config("data: {train: train.jsonl}\neval: {max_new_tokens: 1000000000}\n");
  EXPECT_THAT(error, HasSubstr("eval.max_new_tokens"));
  EXPECT_THAT(error, HasSubstr("1000000000"));
  EXPECT_THAT(error, HasSubstr("allowed 1 to 8"));
}

TEST_F(ModelBoundSettings, MaxSeqLenBeyondTheModelsPositionsIsRefused) {
  const std::string error = error_of_config("data: {train: train.jsonl, max_seq_len: 32}\n");
  EXPECT_THAT(error, HasSubstr("data.max_seq_len"));
  EXPECT_THAT(error, HasSubstr("32"));
  EXPECT_THAT(error, HasSubstr("allowed 2 to 8"));
  EXPECT_EQ(read_config("data: {train: train.jsonl, max_seq_len: 8}\n").data.max_seq_len, 8);
}

TEST(ModelBoundEngine, LoraInitRefusesARankBeyondTheLayerDimensions) {
  LoraConfig lora;  // q_proj and v_proj: v_proj is [16, 32]
  lora.rank = 1000000;
  EXPECT_THAT(test::error_of<Error>([&] { LoraAdapter::init(tiny(), lora, 0, DType::f32); }),
              HasSubstr("allowed 1 to 16"));
  lora.rank = 16;
  EXPECT_EQ(LoraAdapter::init(tiny(), lora, 0, DType::f32).config.rank, 16);
}

TEST(ModelBoundEngine, GenerateRefusesMoreNewTokensThanTheModelHasPositions) {
  LlamaConfig config = tiny();
  config.max_position_embeddings = 16;
  const LlamaModel model(LlamaWeights::random(config, 4, DType::f32));
  const std::vector<int32_t> prompt = {1, 5, 7};
  SamplingOptions options;
  options.max_new_tokens = 17;
  const std::string error = test::error_of<Error>([&] { generate(model, nullptr, prompt, options); });
  EXPECT_THAT(error, HasSubstr("max_new_tokens 17"));
  EXPECT_THAT(error, HasSubstr("allowed 0 to 16"));
  options.max_new_tokens = 4;
  EXPECT_EQ(generate(model, nullptr, prompt, options).size(), 4u);
}

TEST(ModelBoundEngine, ACheckpointWithLayersItsConfigDoesNotDeclareIsRefused) {
  test::TempDir dir;
  const std::string model = dir.path("model");
  LlamaWeights::random(tiny(2), 5, DType::f32).save(model, DType::f32);
  nlohmann::json config = tiny(2).to_json();
  config["num_hidden_layers"] = 1;
  write_config_json(model, config);
  const std::string error = test::error_of<Error>([&] { LlamaWeights::load(model, DType::f32); });
  EXPECT_THAT(error, HasSubstr(model));
  EXPECT_THAT(error, HasSubstr("layer 1"));
  EXPECT_THAT(error, HasSubstr("num_hidden_layers 1"));
  config["num_hidden_layers"] = 2;
  write_config_json(model, config);
  EXPECT_EQ(LlamaWeights::load(model, DType::f32).layers.size(), 2u);
}

}  // namespace
}  // namespace fe
