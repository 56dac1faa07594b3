// What would make a participant fail as it starts is found before anything starts, and the error
// names the participant, the file and the setting.
#include "fed/preflight.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>

#include "engine/llama_weights.h"
#include "tests/test_files.h"
#include "tests/test_util.h"

namespace fe::fed {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class Preflight : public ::testing::Test {
 protected:
  void SetUp() override {
    const LlamaConfig c = test::tiny_llama({.hidden = 16, .intermediate = 32, .heads = 2, .kv_heads = 1, .vocab = 16});
    LlamaWeights::random(c, 1, DType::f32).save(dir_.path("base"), DType::f32);
    test::write_file(dir_.path("a.jsonl"), "{\"input_ids\": [1, 2, 3]}\n");
  }

  std::string write(const std::string& participants) {
    test::write_file(dir_.path("fed.yaml"),
                     "model: base\ndata: {train: a.jsonl, format: tokenized}\n"
                     "adapter: {rank: 2, targets: [q_proj]}\noutput: {dir: out}\n"
                     "server: {address: 'tcp://127.0.0.1:0', rounds: 1, join_timeout: 600}\n"
                     "participants: [" +
                         participants + "]\n");
    return dir_.path("fed.yaml");
  }

  std::string error_of(const std::string& participants) {
    try {
      check_local_participants(read_federation_config(write(participants)));
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  test::TempDir dir_;
};

TEST_F(Preflight, NamesTheParticipantTheFileAndTheKey) {
  EXPECT_EQ(error_of("{name: p0}, {name: p1, data: {train: a.jsonl}}"), "");
  EXPECT_THAT(error_of("{name: p0}, {name: p1, data: {train: missing.jsonl}}"),
              AllOf(HasSubstr("participant p1"), HasSubstr(dir_.path("missing.jsonl")),
                    HasSubstr("(participants[1].data.train)")));
  std::filesystem::remove(dir_.path("a.jsonl"));  // the top-level data, which p0 uses
  EXPECT_THAT(error_of("{name: p0}"),
              AllOf(HasSubstr("participant p0"), HasSubstr(dir_.path("a.jsonl")), HasSubstr("(data.train)")));
  test::write_file(dir_.path("a.jsonl"), "{\"input_ids\": [1, 2, 3]}\n");
  EXPECT_THAT(error_of("{name: p0, adapter: {rank: 4}}"),
              AllOf(HasSubstr("participant p0"), HasSubstr("overrides the adapter section")));
  // Nodes on other hosts hold their own files: not checked here.
  EXPECT_EQ(error_of("{name: p0}, {name: p1, data: {train: missing.jsonl}, nodes: [{host: elsewhere.example}]}"), "");
}

TEST_F(Preflight, RunRefusesBeforeStartingAnything) {
  write("{name: p0}, {name: p1, data: {train: missing.jsonl}}");
  const auto start = std::chrono::steady_clock::now();
  FILE* pipe = popen((test::cli_path() + " run " + dir_.path("fed.yaml") + " 2>&1").c_str(), "r");
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  EXPECT_EQ(WEXITSTATUS(status), 1) << output;
  EXPECT_THAT(output,
              AllOf(HasSubstr("participant p1"), HasSubstr("participants[1].data.train"), Not(HasSubstr("listening"))));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));  // not join_timeout
  EXPECT_FALSE(std::filesystem::exists(dir_.path("out/participants")));
}

}  // namespace
}  // namespace fe::fed
