// The fedengine binary, run as a user would.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "engine/llama_weights.h"
#include "tests/test_util.h"

namespace fe {
namespace {

using ::testing::HasSubstr;

struct CliResult {
  int status;
  std::string output;  // stdout and stderr
};

CliResult run_cli(const std::string& args) {
  const std::string command = std::string(FE_CLI_PATH) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

const char* kTinyConfig = R"({"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50, "tie_word_embeddings": true})";

TEST(Cli, InitModelIsSeededAndLoadable) {
  test::TempDir dir;
  write_file(dir.path("config.json"), kTinyConfig);
  for (const char* out : {"a", "b"}) {
    const CliResult r = run_cli("init-model --config " + dir.path("config.json") + " --out " + dir.path(out) + " --seed 5");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  ASSERT_EQ(run_cli("init-model --config " + dir.path("config.json") + " --out " + dir.path("c") + " --seed 6").status, 0);
  EXPECT_EQ(slurp(dir.path("a/model.safetensors")), slurp(dir.path("b/model.safetensors")));
  EXPECT_NE(slurp(dir.path("a/model.safetensors")), slurp(dir.path("c/model.safetensors")));

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
  write_file(dir.path("config.json"), kTinyConfig);
  ASSERT_EQ(run_cli("init-model --config " + dir.path("config.json") + " --out " + dir.path("m") + " --dtype bf16").status, 0);
  const LlamaWeights w = LlamaWeights::load(dir.path("m"), DType::f32);
  EXPECT_EQ(w.embed_tokens.numel(), 50 * 32);
  EXPECT_THAT(slurp(dir.path("m/config.json")), HasSubstr("\"torch_dtype\": \"bfloat16\""));
}

TEST(Cli, ErrorsNameTheProblem) {
  test::TempDir dir;
  write_file(dir.path("bad.json"), R"({"model_type": "gpt2", "hidden_size": 8})");
  CliResult r = run_cli("init-model --config " + dir.path("bad.json") + " --out " + dir.path("m"));
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("bad.json"), HasSubstr("unsupported architecture")));
  write_file(dir.path("config.json"), kTinyConfig);
  r = run_cli("init-model --config " + dir.path("config.json") + " --out " + dir.path("m") + " --dtype f8");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("--dtype"));
  r = run_cli("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("init-model"));
}

}  // namespace
}  // namespace fe
