// The fedengine binary, run as a user would.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "engine/llama_weights.h"
#include "engine/lora.h"
#include "tests/test_files.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

struct CliResult {
  int status;
  std::string output;  // stdout and stderr
};

// A shell command line, its output and exit status.
CliResult run_command(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

CliResult run_cli(const std::string& args) { return run_command(test::cli_path() + " " + args); }

const char* kTinyConfig = R"({"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50, "tie_word_embeddings": true})";

TEST(Cli, InitModelIsSeededAndLoadable) {
  test::TempDir dir;
  test::write_file(dir.path("config.json"), kTinyConfig);
  for (const char* out : {"a", "b"}) {
    const CliResult r = run_cli("init-model --config " + dir.path("config.json") + " --out " + dir.path(out) + " --seed 5");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  ASSERT_EQ(run_cli("init-model --config " + dir.path("config.json") + " --out " + dir.path("c") + " --seed 6").status, 0);
  EXPECT_EQ(test::read_file(dir.path("a/model.safetensors")), test::read_file(dir.path("b/model.safetensors")));
  EXPECT_NE(test::read_file(dir.path("a/model.safetensors")), test::read_file(dir.path("c/model.safetensors")));

  const LlamaWeights w = LlamaWeights::load(dir.path("a"), DType::f64);
  EXPECT_EQ(w.config.num_key_value_heads, 2);
  EXPECT_EQ(w.lm_head.data(), w.embed_tokens.data());  // tied
  EXPECT_EQ(w.norm.as<double>()[0], 1.0);
  double sum_sq = 0;  // the projections are N(0, 0.02²)
  const Tensor& q = w.layers[0][Proj::q].weight;
  for (int64_t i = 0; i < q.numel(); ++i) sum_sq += q.as<double>()[i] * q.as<double>()[i];
  EXPECT_NEAR(std::sqrt(sum_sq / q.numel()), 0.02, 0.003);
}

TEST(Cli, InitModelWritesBf16) {
  test::TempDir dir;
  test::write_file(dir.path("config.json"), kTinyConfig);
  ASSERT_EQ(run_cli("init-model --config " + dir.path("config.json") + " --out " + dir.path("m") + " --dtype bf16").status, 0);
  const LlamaWeights w = LlamaWeights::load(dir.path("m"), DType::f32);
  EXPECT_EQ(w.embed_tokens.numel(), 50 * 32);
  EXPECT_THAT(test::read_file(dir.path("m/config.json")), HasSubstr("\"torch_dtype\": \"bfloat16\""));
}

TEST(Cli, ErrorsNameTheProblem) {
  test::TempDir dir;
  test::write_file(dir.path("bad.json"), R"({"model_type": "gpt2", "hidden_size": 8})");
  CliResult r = run_cli("init-model --config " + dir.path("bad.json") + " --out " + dir.path("m"));
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("bad.json"), HasSubstr("unsupported architecture")));
  test::write_file(dir.path("config.json"), kTinyConfig);
  r = run_cli("init-model --config " + dir.path("config.json") + " --out " + dir.path("m") + " --dtype f8");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("--dtype"));
  r = run_cli("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("init-model"));
}

// --version prints the project's version (CMakeLists.txt's project(... VERSION)).
TEST(Cli, VersionIsTheProjectVersion) {
  const std::string cmake = test::read_file(FE_SOURCE_DIR "/CMakeLists.txt");
  std::smatch version;
  ASSERT_TRUE(std::regex_search(cmake, version, std::regex(R"(project\(fedengine VERSION ([0-9.]+))")));
  const CliResult r = run_cli("--version");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.output, "fedengine " + version[1].str() + "\n");
}

// A mistake on the command line and a failing command print the same way, "fedengine: error:
// ...", and exit 2 and 1; a command-line mistake names the --help that documents the command.
TEST(Cli, CommandLineMistakesAndFailuresPrintOneWay) {
  test::TempDir dir;
  const std::string init_model = "init-model --config " + dir.path("config.json");
  test::write_file(dir.path("config.json"), kTinyConfig);
  const std::vector<std::pair<std::string, std::string>> mistakes = {
      {"", "fedengine"},
      {"frobnicate", "fedengine"},
      {init_model, "fedengine init-model"},  // --out missing
      {init_model + " --out " + dir.path("m") + " --nonsense", "fedengine init-model"}};
  for (const auto& [args, help] : mistakes) {
    const CliResult r = run_cli(args);
    EXPECT_EQ(r.status, 2) << args << ": " << r.output;
    EXPECT_THAT(r.output, MatchesRegex("fedengine: error: [^\n]+\nRun `" + help + " --help` for its options.\n"))
        << args;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path("m")));
  const CliResult missing = run_cli("init-model --config " + dir.path("missing.json") + " --out " + dir.path("m"));
  EXPECT_EQ(missing.status, 2);
  EXPECT_THAT(missing.output, AllOf(StartsWith("fedengine: error: --config: "), HasSubstr("missing.json")));
  test::write_file(dir.path("bad.json"), R"({"model_type": "gpt2", "hidden_size": 8})");
  const CliResult failed = run_cli("init-model --config " + dir.path("bad.json") + " --out " + dir.path("m"));
  EXPECT_EQ(failed.status, 1);
  EXPECT_THAT(failed.output, AllOf(StartsWith("fedengine: error: "), HasSubstr("bad.json")));
  EXPECT_THAT(failed.output, Not(HasSubstr("--help")));
}

// Sampling settings outside their range are refused with the range, as the config's eval section
// refuses them; validation happens before the model is read.
TEST(Cli, GenerateRefusesSamplingSettingsOutsideTheirRange) {
  test::TempDir dir;
  const std::string generate = "generate --model " + dir.path() + " --prompt-ids 1 ";
  CliResult r = run_cli(generate + "--temperature -1");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.output, HasSubstr("--temperature: must be >= 0, got -1"));
  for (const char* top_p : {"2", "0", "-0.5", "nan"}) {
    r = run_cli(generate + "--top-p " + top_p);
    EXPECT_EQ(r.status, 2) << top_p;
    EXPECT_THAT(r.output, HasSubstr(std::string("--top-p: must be in (0, 1], got ") + top_p));
  }
  r = run_cli(generate + "--top-p lots");
  EXPECT_THAT(r.output, HasSubstr("--top-p: expected a number, got \"lots\""));
}

}  // namespace
}  // namespace fe

namespace fe {
namespace {

// A tiny but complete setup for the train/eval/generate/merge commands.
class CliWorkflow : public ::testing::Test {
 protected:
  void SetUp() override {
    const CliResult data = run_cli("make-data --out " + dir_.path("data") + " --train 64 --eval 8");
    ASSERT_EQ(data.status, 0) << data.output;
    make_data_output_ = data.output;
    test::write_file(dir_.path("model.json"), R"({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
      "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 320, "tie_word_embeddings": true})");
    ASSERT_EQ(run_cli("init-model --config " + dir_.path("model.json") + " --out " + dir_.path("base")).status, 0);
  }
  std::string write_config(const std::string& name, const std::string& extra) {
    test::write_file(dir_.path(name), R"(model: base
tokenizer: data/tokenizer.model
data:
  train: data/shift/train.jsonl
  eval: data/shift/eval.jsonl
train:
  steps: 3
  micro_batch_size: 4
  lr: 1.0e-2
eval:
  max_new_tokens: 4
output:
  dir: run
  log_every: 1
)" + extra);
    return dir_.path(name);
  }
  // A PEFT adapter for the base model with random (non-zero) A and B.
  void write_adapter(const std::string& name, int64_t rank) {
    LoraConfig lora;
    lora.rank = rank;
    LoraAdapter adapter =
        LoraAdapter::init(LlamaWeights::load(dir_.path("base"), DType::f32).config, lora, 1, DType::f32);
    Rng rng(2);
    for (auto& [tensor_name, tensor] : adapter.named_tensors()) rng.fill_normal(tensor, 0, 0.5);
    adapter.save_peft(dir_.path(name));
  }
  test::TempDir dir_;
  std::string make_data_output_;
};

// make-data says what it wrote, and nothing of SentencePiece's own logging.
TEST_F(CliWorkflow, MakeDataPrintsOnlyWhatItWrote) {
  EXPECT_THAT(make_data_output_, StartsWith("wrote " + dir_.path("data") + ": tasks copy, reverse, shift"));
  EXPECT_THAT(make_data_output_, Not(HasSubstr("LOG(")));
  EXPECT_EQ(std::count(make_data_output_.begin(), make_data_output_.end(), '\n'), 1) << make_data_output_;
}

TEST_F(CliWorkflow, TrainWritesAdapterMetricsAndProgress) {
  const CliResult r = run_cli("train " + write_config("cfg.yaml", ""));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("step 3/3"), HasSubstr("tok/s"), HasSubstr("ETA"), HasSubstr("exact match")));
  // The banner counts what trains: rank-8 A and B on q_proj (32 → 4 heads · 8) and v_proj
  // (32 → 2 kv heads · 8) of the one layer; the base is named apart.
  const int64_t lora_parameters = 8 * (32 + 32) + 8 * (32 + 16);
  EXPECT_THAT(
      r.output,
      HasSubstr("training a LoRA adapter (" + std::to_string(lora_parameters) + " parameters) of " + dir_.path("base") +
                " (" + std::to_string(LlamaWeights::load(dir_.path("base"), DType::f32).config.num_parameters()) +
                " parameters, frozen)"));
  EXPECT_TRUE(std::filesystem::exists(dir_.path("run/adapter/adapter_model.safetensors")));
  std::istringstream metrics(test::read_file(dir_.path("run/metrics.jsonl")));
  int steps = 0, evals = 0;
  for (std::string line; std::getline(metrics, line);) {
    const auto record = nlohmann::json::parse(line);
    steps += record.contains("loss");
    evals += record.contains("eval_loss");
  }
  EXPECT_EQ(steps, 3);
  EXPECT_EQ(evals, 2);  // before and after

  // eval and generate use what train wrote; merge folds it into a full checkpoint.
  const CliResult eval = run_cli("eval " + dir_.path("cfg.yaml") + " --adapter " + dir_.path("run/adapter") + " --json");
  ASSERT_EQ(eval.status, 0) << eval.output;
  const auto result = nlohmann::json::parse(eval.output);
  EXPECT_EQ(result["examples"], 8);
  EXPECT_EQ(result["exact_match_examples"], 8);
  EXPECT_GT(result["loss"].get<double>(), 0);
  const CliResult gen = run_cli("generate --model " + dir_.path("base") + " --tokenizer " + dir_.path("data") +
                                " --adapter " + dir_.path("run/adapter") +
                                " --prompt 'shift 1 2 3 4 =' --max-new-tokens 3 --temperature 0.7 --top-p 0.9");
  EXPECT_EQ(gen.status, 0) << gen.output;
  const CliResult merge = run_cli("merge --model " + dir_.path("base") + " --adapter " + dir_.path("run/adapter") +
                                  " --out " + dir_.path("merged"));
  ASSERT_EQ(merge.status, 0) << merge.output;
  EXPECT_TRUE(std::filesystem::exists(dir_.path("merged/model.safetensors")));
}

TEST_F(CliWorkflow, SameSeedSameAdapterAndTrainingResumesFromAnAdapter) {
  const std::string config = write_config("cfg.yaml", "");
  ASSERT_EQ(run_cli("train " + config).status, 0);
  const std::string first = test::read_file(dir_.path("run/adapter/adapter_model.safetensors"));
  std::filesystem::rename(dir_.path("run"), dir_.path("run1"));
  ASSERT_EQ(run_cli("train " + config).status, 0);
  EXPECT_EQ(test::read_file(dir_.path("run/adapter/adapter_model.safetensors")), first);  // bit for bit

  // Continue from the adapter of the first run: training starts where it ended.
  const CliResult resumed = run_cli("train " + write_config("more.yaml", "adapter:\n  init: run1/adapter\n"));
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  const CliResult from_scratch = run_cli("eval " + config);
  const CliResult from_adapter = run_cli("eval " + config + " --adapter " + dir_.path("run1/adapter"));
  EXPECT_NE(from_scratch.output, from_adapter.output);
  EXPECT_THAT(resumed.output, HasSubstr("eval  step 0 | " + from_adapter.output.substr(0, from_adapter.output.find(" |"))));
}

// A run that stopped continues with --resume from its newest checkpoint (within an epoch of the
// data, and after the data wrapped into a second epoch) and ends with the adapter an
// uninterrupted run makes, bit for bit, with one metrics line per step.
TEST_F(CliWorkflow, ResumeContinuesFromTheNewestCheckpointBitForBit) {
  namespace fs = std::filesystem;
  // The loss (and DP-SGD's ε) of every step, from metrics.jsonl.
  auto step_records = [&](const std::string& out) {
    std::vector<nlohmann::json> records;
    std::istringstream metrics(test::read_file(dir_.path(out + "/metrics.jsonl")));
    for (std::string line; std::getline(metrics, line);)
      if (auto record = nlohmann::json::parse(line); record.contains("loss"))
        records.push_back({{"step", record["step"]}, {"loss", record["loss"]}, {"epsilon", record.value("epsilon", 0.0)}});
    return records;
  };
  // LoRA with DP-SGD (noise from the step, ε from the accountant), and full-parameter training
  // (whose checkpoints are whole models).
  for (const auto& [method, result] : {std::pair{"lora", "adapter/adapter_model.safetensors"},
                                       std::pair{"full", "model/model.safetensors"}}) {
    const std::string out = std::string("resumed-") + method;
    const std::string dp_sgd = std::string(method) == "lora" ? "  dp_sgd: {clip_norm: 1.0, noise_multiplier: 0.2}\n" : "";
    test::write_file(dir_.path(out + ".yaml"),
                     "model: base\ntokenizer: data/tokenizer.model\ndata:\n"
                     "  train: data/shift/train.jsonl\n  eval: data/shift/eval.jsonl\nadapter: {method: " +
                         std::string(method) +
                         "}\ntrain:\n  steps: 8\n  micro_batch_size: 8\n  grad_accum_steps: 2\n  lr: 1.0e-2\n"
                         "  schedule: cosine\n  warmup_steps: 2\n" +
                         dp_sgd +
                         "eval:\n  every: 3\n  max_examples: 2\n"
                         "  max_new_tokens: 2\noutput:\n  dir: " +
                         out + "\n  save_every: 3\n");
    const std::string config = dir_.path(out + ".yaml");
    CliResult r = run_cli("train " + config + " --resume");
    EXPECT_NE(r.status, 0);
    EXPECT_THAT(r.output, HasSubstr("no checkpoint to resume from"));

    ASSERT_EQ(run_cli("train " + config).status, 0);
    const std::string file = dir_.path(out + "/" + result);
    const std::string uninterrupted = test::read_file(file);
    const std::vector<nlohmann::json> uninterrupted_steps = step_records(out);
    ASSERT_EQ(uninterrupted_steps.size(), 8u);
    ASSERT_TRUE(fs::exists(dir_.path(out + "/checkpoint-3")) && fs::exists(dir_.path(out + "/checkpoint-6")));

    // 64 examples in micro-batches of 8, 2 per step: the data starts its second epoch at step 5.
    for (const int resume_after : {3, 6}) {
      fs::remove(file);
      if (resume_after == 3) fs::remove_all(dir_.path(out + "/checkpoint-6"));
      if (resume_after == 6) std::ofstream(dir_.path(out + "/metrics.jsonl"), std::ios::app) << "{\"step\": 7, \"lo";  // cut by a crash
      r = run_cli("train " + config + " --resume");
      ASSERT_EQ(r.status, 0) << r.output;
      EXPECT_THAT(r.output, HasSubstr("resuming after step " + std::to_string(resume_after)));
      EXPECT_EQ(test::read_file(file), uninterrupted) << method << ", resumed after step " << resume_after;
      EXPECT_EQ(step_records(out), uninterrupted_steps) << method << ", resumed after step " << resume_after;
    }

    // A config that changes what a step means is refused; a fresh run clears the old checkpoints.
    std::string changed = test::read_file(config);
    changed.replace(changed.find("steps: 8"), 8, "steps: 9");
    changed.replace(changed.find("save_every: 3"), 13, "save_every: 4");
    test::write_file(config, changed);
    r = run_cli("train " + config + " --resume");
    EXPECT_NE(r.status, 0);
    EXPECT_THAT(r.output, HasSubstr("was written by a run with train.steps = 8; this config has 9"));
    r = run_cli("train " + config);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("removed 2 checkpoint(s) of an earlier run"));
    EXPECT_FALSE(fs::exists(dir_.path(out + "/checkpoint-3")));
    EXPECT_TRUE(fs::exists(dir_.path(out + "/checkpoint-8")));
  }
}

// Ctrl-C stops a run after its step with a checkpoint (exit status 130), and --resume continues
// from it.
TEST_F(CliWorkflow, InterruptedTrainingSavesACheckpointThatResumeContinues) {
  test::write_file(dir_.path("long.yaml"),
                   "model: base\ntokenizer: data/tokenizer.model\ndata: {train: data/shift/train.jsonl}\n"
                   "train: {steps: 1000000, micro_batch_size: 2}\noutput: {dir: long, log_every: 1000}\n");
  auto loss_steps = [&] {
    std::vector<int64_t> steps;
    std::istringstream metrics(test::read_file(dir_.path("long/metrics.jsonl")));
    for (std::string line; std::getline(metrics, line);)
      if (const auto record = nlohmann::json::parse(line); record.contains("loss")) steps.push_back(record["step"]);
    return steps;
  };
  // SIGINT once metrics.jsonl holds more than `done` steps: long before a million, however loaded
  // the machine is (a fixed delay could fall before the first step).
  auto run_interrupted = [&](const std::string& flags, size_t done) {
    const std::string metrics = dir_.path("long/metrics.jsonl");
    return run_command("(" + test::cli_path() + " train " + dir_.path("long.yaml") + flags + " & pid=$!; " +
                       "for i in $(seq 1200); do [ \"$(grep -c '\"loss\"' " + metrics + " 2>/dev/null)\" -gt " +
                       std::to_string(done) + " ] 2>/dev/null && break; sleep 0.05; done; kill -INT $pid; wait $pid)");
  };
  const CliResult first = run_interrupted("", 0);
  EXPECT_EQ(first.status, 130) << first.output;
  const std::vector<int64_t> steps = loss_steps();
  ASSERT_FALSE(steps.empty()) << first.output;
  const int64_t stopped_after = steps.back();
  EXPECT_THAT(first.output, HasSubstr("stopped after step " + std::to_string(stopped_after) + ": saved checkpoint-"));
  EXPECT_TRUE(std::filesystem::exists(dir_.path("long/checkpoint-" + std::to_string(stopped_after) + "/trainer_state.safetensors")));

  const CliResult second = run_interrupted(" --resume", steps.size());
  EXPECT_EQ(second.status, 130) << second.output;
  EXPECT_THAT(second.output, HasSubstr("resuming after step " + std::to_string(stopped_after)));
  const std::vector<int64_t> more = loss_steps();
  ASSERT_GT(more.size(), steps.size());
  for (size_t i = 0; i < more.size(); ++i) EXPECT_EQ(more[i], static_cast<int64_t>(i) + 1);
}

// train.device: cuda trains, evaluates and generates with the bf16 model in GPU memory, and the
// adapter it writes evaluates the same on the CPU; where the GPU cannot be used, the run stops at
// once and says why.
TEST_F(CliWorkflow, TrainsOnTheGpuOrSaysWhyItCannot) {
  test::write_file(dir_.path("gpu_model.json"),
                   R"({"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
      "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 320, "tie_word_embeddings": true})");
  ASSERT_EQ(run_cli("init-model --config " + dir_.path("gpu_model.json") + " --out " + dir_.path("gpu_base")).status, 0);
  auto config = [&](const std::string& device) {  // head_dim 64, as the GPU attention kernel takes
    test::write_file(dir_.path(device + ".yaml"),
                     "model: gpu_base\ntokenizer: data/tokenizer.model\ndata:\n"
                     "  train: data/shift/train.jsonl\n  eval: data/shift/eval.jsonl\ntrain:\n  steps: 8\n"
                     "  micro_batch_size: 8\n  lr: 1.0e-2\n  device: " +
                         device +
                         "\neval:\n  max_new_tokens: 4\n"
                         "output:\n  dir: gpu_run\n  log_every: 1\n");
    return dir_.path(device + ".yaml");
  };
  const CliResult r = run_cli("train " + config("cuda"));
  if (const std::string reason = gpu_unavailable_reason(); !reason.empty()) {
    EXPECT_NE(r.status, 0);
    EXPECT_THAT(r.output, AllOf(HasSubstr("train.device is cuda, but"), HasSubstr(reason)));
    GTEST_SKIP() << "training on the GPU needs one: " << reason;
  }
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("on the GPU in bf16"), HasSubstr("step 8/8"), HasSubstr("exact match"),
                              HasSubstr("GPU memory peak")));
  std::vector<double> losses;
  std::istringstream metrics(test::read_file(dir_.path("gpu_run/metrics.jsonl")));
  for (std::string line; std::getline(metrics, line);)
    if (const auto record = nlohmann::json::parse(line); record.contains("loss")) losses.push_back(record["loss"]);
  ASSERT_EQ(losses.size(), 8u);
  EXPECT_LT(losses.back(), losses.front());

  const std::string adapter = " --adapter " + dir_.path("gpu_run/adapter") + " --json";
  const CliResult on_gpu = run_cli("eval " + config("cuda") + adapter), on_cpu = run_cli("eval " + config("cpu") + adapter);
  ASSERT_EQ(on_gpu.status, 0) << on_gpu.output;
  ASSERT_EQ(on_cpu.status, 0) << on_cpu.output;
  const double gpu_loss = nlohmann::json::parse(on_gpu.output)["loss"], cpu_loss = nlohmann::json::parse(on_cpu.output)["loss"];
  EXPECT_NEAR(gpu_loss, cpu_loss, 2e-2 * cpu_loss);
  const CliResult generated = run_cli("generate --model " + dir_.path("gpu_base") + " --tokenizer " + dir_.path("data") +
                                      " --adapter " + dir_.path("gpu_run/adapter") + " --prompt 'shift 1 2 3 =' --device cuda");
  EXPECT_EQ(generated.status, 0) << generated.output;
}

// Pre-tokenized data needs no tokenizer: neither in the model directory (it has none here) nor as
// `tokenizer: null`; ids are checked against the model's vocab_size (320, the tokenizer's 300 would
// refuse 310). generate takes ids and prints ids.
TEST_F(CliWorkflow, PreTokenizedDataNeedsNoTokenizer) {
  std::string records;
  for (int i = 0; i < 16; ++i)
    records +=
        "{\"input_ids\": [1, " + std::to_string(10 + i) + ", 310, 42, 43], \"labels\": [-100, -100, 310, 42, 43]}\n";
  test::write_file(dir_.path("data/ids.jsonl"), records);
  for (const std::string tokenizer_line : {"", "tokenizer: null\n"}) {
    test::write_file(dir_.path("ids.yaml"), "model: base\n" + tokenizer_line +
                                                "data: {train: data/ids.jsonl, eval: data/ids.jsonl}\n"
                                                "train: {steps: 2, micro_batch_size: 4}\noutput: {dir: ids_run}\n");
    const CliResult trained = run_cli("train " + dir_.path("ids.yaml"));
    ASSERT_EQ(trained.status, 0) << tokenizer_line << trained.output;
    const CliResult eval =
        run_cli("eval " + dir_.path("ids.yaml") + " --adapter " + dir_.path("ids_run/adapter") + " --json");
    ASSERT_EQ(eval.status, 0) << eval.output;
    const auto result = nlohmann::json::parse(eval.output);
    EXPECT_EQ(result["examples"], 16);
    EXPECT_EQ(result["exact_match_examples"], 0);  // nothing to decode generations with
    EXPECT_EQ(result["tokens"], 16 * 3);
  }
  const CliResult ids =
      run_cli("generate --model " + dir_.path("base") + " --prompt-ids '1, 10 310' --max-new-tokens 3");
  ASSERT_EQ(ids.status, 0) << ids.output;
  EXPECT_THAT(ids.output, MatchesRegex("[0-9]+ [0-9]+ [0-9]+\n"));
  const CliResult outside = run_cli("generate --model " + dir_.path("base") + " --prompt-ids 1,320");
  EXPECT_NE(outside.status, 0);
  EXPECT_THAT(outside.output, AllOf(HasSubstr("320"), HasSubstr("[0, 320)")));
  const CliResult no_text = run_cli("generate --model " + dir_.path("base") + " --prompt 'shift 1 ='");
  EXPECT_NE(no_text.status, 0);
  EXPECT_THAT(no_text.output, AllOf(HasSubstr("holds no tokenizer"), HasSubstr("--tokenizer")));
  // The project's SentencePiece tokenizer has no chat template: --chat says so.
  const CliResult chat =
      run_cli("generate --model " + dir_.path("base") + " --tokenizer " + dir_.path("data") + " --chat --prompt hi");
  EXPECT_NE(chat.status, 0);
  EXPECT_THAT(chat.output, AllOf(HasSubstr("no chat template"), HasSubstr("drop --chat")));
}

// train and merge write into a new or empty directory, or (train) an earlier run's; anything else
// is refused unless --overwrite, and nothing is written before that.
TEST_F(CliWorkflow, TrainAndMergeRefuseADirectoryTheyDidNotWrite) {
  namespace fs = std::filesystem;
  std::string config = test::read_file(write_config("mine.yaml", ""));
  config.replace(config.find("dir: run"), 8, "dir: mine");
  test::write_file(dir_.path("mine.yaml"), config);
  fs::create_directories(dir_.path("mine"));
  test::write_file(dir_.path("mine/notes.txt"), "my notes");
  CliResult r = run_cli("train " + dir_.path("mine.yaml"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, AllOf(HasSubstr("output.dir " + dir_.path("mine") + " is not empty"), HasSubstr("notes.txt"),
                              HasSubstr("--overwrite")));
  EXPECT_FALSE(fs::exists(dir_.path("mine/metrics.jsonl")));
  r = run_cli("train " + dir_.path("mine.yaml") + " --overwrite");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--overwrite: writing into " + dir_.path("mine")));
  EXPECT_EQ(test::read_file(dir_.path("mine/notes.txt")), "my notes");
  EXPECT_TRUE(fs::exists(dir_.path("mine/adapter/adapter_model.safetensors")));

  // An earlier run's output is replaced, with a word.
  const std::string run_config = write_config("cfg.yaml", "");
  ASSERT_EQ(run_cli("train " + run_config).status, 0);
  r = run_cli("train " + run_config);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("replacing the output of an earlier run in " + dir_.path("run")));

  // merge: a model cannot be told from a merged one, so any content is refused.
  const std::string base_weights = test::read_file(dir_.path("base/model.safetensors"));
  const std::string merge = "merge --model " + dir_.path("base") + " --adapter " + dir_.path("run/adapter") + " --out ";
  r = run_cli(merge + dir_.path("base"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, AllOf(HasSubstr("--out " + dir_.path("base") + " is not empty"), HasSubstr("model.safetensors"),
                              HasSubstr("--overwrite")));
  EXPECT_EQ(test::read_file(dir_.path("base/model.safetensors")), base_weights);
  ASSERT_EQ(run_cli(merge + dir_.path("merged")).status, 0);
  EXPECT_EQ(run_cli(merge + dir_.path("merged")).status, 1);
  r = run_cli(merge + dir_.path("merged") + " --overwrite");
  EXPECT_EQ(r.status, 0) << r.output;
}

// eval --adapter none evaluates the base model even where the config names adapter.init, as its
// --help says; a config whose adapter.rank contradicts adapter.init's is refused naming both.
TEST_F(CliWorkflow, EvalAdapterNoneAndAnInitAdapterTheConfigContradicts) {
  write_adapter("adapter8", 8);
  const std::string plain = write_config("plain.yaml", "");
  const std::string with_init = write_config("init.yaml", "adapter:\n  init: adapter8\n");
  EXPECT_THAT(run_cli("eval --help").output, HasSubstr("none"));
  const CliResult base = run_cli("eval " + plain + " --json");
  const CliResult none = run_cli("eval " + with_init + " --adapter none --json");
  const CliResult adapted = run_cli("eval " + with_init + " --json");
  ASSERT_EQ(base.status, 0) << base.output;
  ASSERT_EQ(none.status, 0) << none.output;
  ASSERT_EQ(adapted.status, 0) << adapted.output;
  EXPECT_EQ(nlohmann::json::parse(none.output)["loss"], nlohmann::json::parse(base.output)["loss"]);
  EXPECT_NE(nlohmann::json::parse(adapted.output)["loss"], nlohmann::json::parse(base.output)["loss"]);

  const CliResult r = run_cli("train " + write_config("conflict.yaml", "adapter:\n  init: adapter8\n  rank: 4\n"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, AllOf(HasSubstr("conflict.yaml:17:9: adapter.rank: 4, but adapter.init " +
                                        dir_.path("adapter8") + " has r 8"),
                              HasSubstr("drop adapter.rank or make it 8")));
  EXPECT_EQ(
      run_cli("eval " + write_config("agrees.yaml", "adapter:\n  init: adapter8\n  rank: 8\n") + " --json").status, 0);
}

// fedengine eval on a multiple-choice file prints lm-eval's acc and acc_norm, overall and per
// subject (and the accuracy of generated answer letters when asked), and --json carries them;
// malformed records and eval settings are refused naming the file, line and key.
TEST_F(CliWorkflow, EvalScoresMultipleChoiceQuestions) {
  test::write_file(dir_.path("data/mc.jsonl"),
                   R"({"question": "copy 3 1 =", "choices": ["3 1", "1 3", "4 2"], "answer": 0, "subject": "copy"}
{"question": "reverse 3 1 =", "choices": ["3 1", "1 3"], "answer": 1, "subject": "reverse"}
{"question": "shift 3 1 =", "choices": ["3 1", "4 2", "1 3", "5 5"], "answer": 1, "subject": "shift"}
)");
  test::write_file(dir_.path("data/mc_dev.jsonl"),
                   R"({"question": "copy 2 =", "choices": ["2", "3"], "answer": 0, "subject": "copy"}
{"question": "shift 2 =", "choices": ["2", "3"], "answer": 1, "subject": "shift"}
)");
  const auto config = [&](const std::string& name, const std::string& eval_file, const std::string& eval) {
    test::write_file(dir_.path(name), "model: base\ntokenizer: data/tokenizer.model\ndata:\n  eval: " + eval_file +
                                          "\neval:\n  max_new_tokens: 2\n" + eval);
    return dir_.path(name);
  };
  const std::string mc = config("mc.yaml", "data/mc.jsonl",
                                "  few_shot: 1\n  few_shot_file: data/mc_dev.jsonl\n  generate_answers: true\n");
  const CliResult text = run_cli("eval " + mc);
  ASSERT_EQ(text.status, 0) << text.output;
  EXPECT_THAT(text.output,
              MatchesRegex("loss [0-9.]+ \\| ppl [0-9.]+ \\| multiple choice acc [0-3]/3 \\([0-9.]+%\\) \\| "
                           "acc_norm [0-3]/3 \\([0-9.]+%\\) \\| answer letter [0-3]/3 \\([0-9.]+%\\)\n"
                           "  copy: acc [01]/1 .*\n  reverse: acc [01]/1 .*\n  shift: acc [01]/1 .*\n"));
  const CliResult json = run_cli("eval " + mc + " --json");
  ASSERT_EQ(json.status, 0) << json.output;
  const auto figures = nlohmann::json::parse(json.output).at("multiple_choice");
  EXPECT_EQ(figures.at("questions"), 3);
  EXPECT_EQ(figures.at("generated"), 3);
  EXPECT_EQ(figures.at("subjects").size(), 3u);
  EXPECT_EQ(figures.at("subjects").at("shift").at("questions"), 1);
  const double acc = figures.at("acc");
  EXPECT_TRUE(acc == 0 || acc == 1.0 / 3 || acc == 2.0 / 3 || acc == 1) << acc;

  test::write_file(dir_.path("data/mc_bad.jsonl"),
                   "{\"question\": \"q\", \"choices\": [\"1\", \"2\"], \"answer\": 0}\n"
                   "{\"question\": \"q\", \"choices\": [\"1\", \"2\", \"3\"], \"answer\": 3}\n");
  CliResult r = run_cli("eval " + config("bad.yaml", "data/mc_bad.jsonl", ""));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("mc_bad.jsonl:2: answer 3 is out of range: the record has 3 choices, so the answer "
                                  "is an index from 0 to 2"));
  r = run_cli("eval " + config("noshots.yaml", "data/mc.jsonl", "  few_shot: 2\n"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, AllOf(HasSubstr("noshots.yaml:7:"), HasSubstr("eval.few_shot: 2 solved questions"),
                              HasSubstr("set eval.few_shot_file")));
  r = run_cli("eval " + config("pattern.yaml", "data/mc.jsonl", "  answer_pattern: \"([A-D]\"\n"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output,
              AllOf(HasSubstr("pattern.yaml:7:"), HasSubstr("eval.answer_pattern"), HasSubstr("does not compile")));
}

TEST_F(CliWorkflow, ConfigMistakesNameFileLineAndKey) {
  CliResult r = run_cli("train " + write_config("typo.yaml", "adapter:\n  rnak: 4\n"));
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("typo.yaml:16:3"), HasSubstr("adapter.rnak"), HasSubstr("did you mean \"rank\"")));
  r = run_cli("train " + write_config("type.yaml", "adapter:\n  rank: four\n"));
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("type.yaml:16:9"), HasSubstr("adapter.rank"), HasSubstr("integer")));

  test::write_file(dir_.path("nofile.yaml"), "model: base\ndata:\n  train: data/nope.jsonl\noutput:\n  dir: run\n");
  r = run_cli("train " + dir_.path("nofile.yaml"));
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("data.train"), HasSubstr("nope.jsonl")));

  // A model directory without a tokenizer, text data and no `tokenizer:`: the error says what to do.
  test::write_file(dir_.path("notok.yaml"),
                   "model: base\ndata:\n  train: data/shift/train.jsonl\noutput:\n  dir: run\n");
  r = run_cli("train " + dir_.path("notok.yaml"));
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output,
              AllOf(HasSubstr("train.jsonl:1"), HasSubstr("needs a tokenizer"), HasSubstr("set `tokenizer:`")));

  // A misspelled section leaves a required setting missing: the misspelling, the likely cause,
  // comes first with its line.
  test::write_file(dir_.path("section.yaml"),
                   "model: base\ntokenizer: data/tokenizer.model\ndata:\n  train: data/shift/train.jsonl\n"
                   "train:\n  steps: 1\nouptut:\n  dir: run\n");
  r = run_cli("train " + dir_.path("section.yaml"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, StartsWith("fedengine: error: " + dir_.path("section.yaml") +
                                   ":7:1: ouptut: unknown key (did you mean \"output\"?)\n"));
  EXPECT_THAT(r.output, HasSubstr("output: missing required key \"dir\""));
  // A setting in the wrong section is pointed to where it belongs.
  test::write_file(dir_.path("misplaced.yaml"),
                   "model: base\ndata:\n  train: data/shift/train.jsonl\n"
                   "  tokenizer: data/tokenizer.model\noutput:\n  dir: run\n");
  r = run_cli("train " + dir_.path("misplaced.yaml"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("misplaced.yaml:4:3: data.tokenizer: unknown key (did you mean the top-level "
                                  "\"tokenizer\"?)"));

  test::write_file(dir_.path("data/bad.jsonl"), "{\"prompt\": \"a\", \"completion\": \"b\"}\n{not json\n");
  test::write_file(dir_.path("bad.yaml"),
                   "model: base\ntokenizer: data\ndata:\n  train: data/bad.jsonl\noutput:\n  dir: run\n");
  r = run_cli("train " + dir_.path("bad.yaml"));
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("bad.jsonl:2"));
}

}  // namespace
}  // namespace fe

#include "engine/lora.h"
#include "engine/safetensors.h"

namespace fe {
namespace {

TEST(Cli, AggregateAveragesAdaptersByExamples) {
  test::TempDir dir;
  const LlamaConfig c = test::tiny_llama({.hidden = 8, .intermediate = 16, .heads = 2, .kv_heads = 1, .head_dim = 4, .vocab = 10});
  LoraConfig lc;
  lc.rank = 2;
  std::vector<LoraAdapter> adapters;
  for (uint64_t seed : {1, 2, 3}) {
    adapters.push_back(LoraAdapter::init(c, lc, seed, DType::f32));
    Rng rng(seed);
    for (auto& [name, t] : adapters.back().named_tensors()) rng.fill_normal(t, 0, 1);
    adapters.back().save_peft(dir.path("a" + std::to_string(seed)));
  }
  // --examples takes one comma-separated list, before or after the adapters.
  const std::string aggregate = "aggregate --strategy fedavg --base " + dir.path("a1") + " --out ";
  const std::string a2_a3 = " " + dir.path("a2") + " " + dir.path("a3");
  for (const std::string& args : {aggregate + dir.path("before") + " --examples 1,3" + a2_a3,
                                  aggregate + dir.path("after") + a2_a3 + " --examples=1,3"}) {
    const CliResult r = run_cli(args);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  for (const char* out : {"before", "after"}) {
    const LoraAdapter merged = LoraAdapter::load_peft(dir.path(out), c, DType::f32);
    for (size_t i = 0; i < merged.named_tensors().size(); ++i) {
      const Tensor& result = merged.named_tensors()[i].second;
      const Tensor& a2 = adapters[1].named_tensors()[i].second;
      const Tensor& a3 = adapters[2].named_tensors()[i].second;
      for (int64_t j = 0; j < result.numel(); ++j)
        ASSERT_NEAR(result.as<float>()[j], (a2.as<float>()[j] + 3 * a3.as<float>()[j]) / 4, 1e-6) << out;
    }
  }
  // Counts given apart are not taken for adapters, nor adapters for counts.
  CliResult r = run_cli(aggregate + dir.path("x") + " --examples 1 3" + a2_a3);
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.output, AllOf(HasSubstr("\"3\" is a number, not an adapter directory"), HasSubstr("--examples 10,30")));
  r = run_cli(aggregate + dir.path("x") + " --examples 1,3,5" + a2_a3);
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.output, HasSubstr("needs one count per adapter (2), got 3"));
  r = run_cli(aggregate + dir.path("x") + " --examples 1,x" + a2_a3);
  EXPECT_THAT(r.output, HasSubstr("\"x\" is not a positive count"));
  EXPECT_FALSE(std::filesystem::exists(dir.path("x")));
  // Every option of the fedopt strategies says what it is.
  const std::string help = run_cli("aggregate --help").output;
  EXPECT_THAT(help, AllOf(HasSubstr("first-moment decay β₁"), HasSubstr("second-moment decay β₂"),
                          HasSubstr("adaptivity τ"), HasSubstr("server learning rate η")));
  EXPECT_NE(run_cli("aggregate --strategy fedmedian --base " + dir.path("a1") + " --out " + dir.path("x") + " " +
                    dir.path("a2")).status, 0);
}

}  // namespace
}  // namespace fe

namespace fe {
namespace {

TEST(Cli, SplitKeepsEveryLineOnceAndSkewsByLabel) {
  test::TempDir dir;
  {
    std::ofstream data(dir.path("data.jsonl"));
    for (int i = 0; i < 200; ++i) data << "{\"text\": \"t" << i << "\", \"category\": \"" << "abcd"[i % 4] << "\"}\n";
  }
  for (const std::string method : {"--method iid", "--method dirichlet --alpha 0.05 --label-field category"}) {
    const CliResult r = run_cli("split " + dir.path("data.jsonl") + " --out " + dir.path("parts") + " --parts 4 " + method);
    ASSERT_EQ(r.status, 0) << r.output;
    std::multiset<std::string> seen;
    double top_share = 0;
    for (int k = 0; k < 4; ++k) {
      std::ifstream part(dir.path("parts/part-" + std::to_string(k) + ".jsonl"));
      std::map<std::string, int> per_label;
      int lines = 0;
      for (std::string line; std::getline(part, line); ++lines) {
        seen.insert(line);
        ++per_label[nlohmann::json::parse(line)["category"]];
      }
      int top = 0;
      for (const auto& [label, n] : per_label) top = std::max(top, n);
      if (lines) top_share += double(top) / lines / 4;
    }
    EXPECT_EQ(seen.size(), 200u);
    EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 200u);  // each line exactly once
    if (method.find("dirichlet") != std::string::npos)
      EXPECT_GT(top_share, 0.6);  // non-IID: parts are dominated by one category
    else
      EXPECT_LT(top_share, 0.45);  // IID: about a quarter of each category everywhere
    std::filesystem::remove_all(dir.path("parts"));
  }
  EXPECT_THAT(run_cli("split " + dir.path("data.jsonl") + " --out " + dir.path("p") + " --method dirichlet").output,
              HasSubstr("--label-field"));
}

}  // namespace
}  // namespace fe
