// The server holds each participant's result to its bounds (fed/update_bounds.h): a result with a
// NaN is refused and its sender told, without the round waiting for it; a result claiming more
// examples than the participant's share is refused; an update far above the round's median is
// clipped; and an aggregate that is not finite is not committed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/llama_weights.h"
#include "engine/lora.h"
#include "fed/server.h"
#include "fed/transport.h"
#include "tests/server_test_util.h"
#include "tests/test_util.h"

namespace fe::fed {
namespace {

using test::expect_message;
using ::testing::HasSubstr;
using ::testing::Not;

class ServerBounds : public ::testing::Test {
 protected:
  void SetUp() override {
    const LlamaConfig c = test::tiny_llama({.hidden = 16, .intermediate = 32, .heads = 2, .kv_heads = 1, .vocab = 16});
    LlamaWeights::random(c, 1, DType::f32).save(dir_.path("base"), DType::f32);
    std::ofstream(dir_.path("train.jsonl")) << R"({"input_ids": [1, 2, 3]})"
                                            << "\n";
  }

  // One round between `good` and `other` (train.steps 5 × micro_batch_size 4: at most 20 examples),
  // one result enough.
  FederationConfig federation(const std::string& server_extra = "") {
    std::ofstream(dir_.path("fed.yaml")) << "model: base\ndata: {train: train.jsonl, format: tokenized}\n"
                                            "adapter: {rank: 2, targets: [q_proj]}\noutput: {dir: out}\n"
                                            "train: {steps: 5, micro_batch_size: 4}\n"
                                            "server: {address: 'tcp://127.0.0.1:0', rounds: 1, min_clients: 2,"
                                            " min_results: 1, heartbeat: 5, round_timeout: 60"
                                         << server_extra << "}\nparticipants: [{name: good}, {name: other}]\n";
    return read_federation_config(dir_.path("fed.yaml"));
  }

  // Both participants joined, and their fits; the server runs on its own thread meanwhile.
  void start(FederationConfig config) {
    config_ = std::move(config);  // the server keeps a reference
    server_.emplace(config_, false, log_);
    runner_ = std::thread([this] { server_->run(); });
    good_.emplace(server_->endpoint(), std::nullopt, "");
    other_.emplace(server_->endpoint(), std::nullopt, "");
    for (auto [socket, name] : {std::pair{&*good_, "good"}, std::pair{&*other_, "other"}}) {
      Message join{.type = MessageType::join, .client_id = name};
      join.metrics["num_examples"] = 10;
      socket->send(encode(join));
    }
    fit_ = expect_message(*good_, MessageType::fit);
    expect_message(*other_, MessageType::fit);
  }

  // A result of the fit's adapter with its first tensor's element 0 moved by `step`.
  Message result(const std::string& who, float step, int64_t examples = 20) {
    Message r{.type = MessageType::fit_result, .round = 1, .client_id = who, .num_examples = examples};
    r.tensors = fit_.tensors;
    r.tensors[0].tensor = r.tensors[0].tensor.clone();
    r.tensors[0].tensor.as<float>()[0] += step;
    return r;
  }

  std::string log() { return log_buffer_.text(); }

  void TearDown() override {
    if (runner_.joinable()) runner_.join();
  }

  test::TempDir dir_;
  FederationConfig config_;
  test::SharedLog log_buffer_;
  std::ostream log_{&log_buffer_};
  std::optional<Server> server_;
  std::thread runner_;
  std::optional<ClientSocket> good_, other_;
  Message fit_;
};

TEST_F(ServerBounds, ANonFiniteResultIsRefusedWithARejectAndTheRoundDoesNotWaitForIt) {
  start(federation());
  Message poisoned = result("good", NAN);
  const auto started = std::chrono::steady_clock::now();
  good_->send(encode(poisoned));
  const Message reject = expect_message(*good_, MessageType::reject);
  EXPECT_EQ(reject.round, 1) << log();
  EXPECT_THAT(std::get<std::string>(reject.config.at("reason")), HasSubstr("is nan"));
  other_->send(encode(result("other", 0.01f)));
  runner_.join();
  // Well within round_timeout (60 s): the refused result was good's answer.
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), 30);
  EXPECT_THAT(log(), HasSubstr("refused a message from good: undecodable fit_result"));
  EXPECT_THAT(log(), HasSubstr("round 1/1 | 1 of 2 results"));
}

TEST_F(ServerBounds, MoreExamplesThanTheShareAreRefused) {
  start(federation());
  good_->send(encode(result("good", 0.01f, int64_t{1} << 62)));
  const Message reject = expect_message(*good_, MessageType::reject);
  EXPECT_THAT(std::get<std::string>(reject.config.at("reason")),
              HasSubstr("num_examples = 4611686018427387904 exceeds the participant's share of 20 examples"));
  other_->send(encode(result("other", 0.01f, 20)));
  runner_.join();
  EXPECT_THAT(log(), HasSubstr("refused a message from good: result for round 1 refused: num_examples"));
  EXPECT_THAT(log(), HasSubstr("round 1/1 | 1 of 2 results"));
}

TEST_F(ServerBounds, AnUpdateFarAboveTheMedianIsClippedOrRefused) {
  start(federation());
  good_->send(encode(result("good", 1e6f)));
  other_->send(encode(result("other", 0.01f)));
  runner_.join();
  EXPECT_THAT(log(), HasSubstr("round 1: clipped the update of good: update norm 1e+06 exceeds "
                               "server.max_update_norm's bound 0.1"));
  // The clipped update: element 0 moved by the bound, 0.1, not by 1e6.
  const LoraAdapter saved =
      LoraAdapter::load_peft(dir_.path("out/adapter"), LlamaConfig::load(dir_.path("base")), DType::f32);
  const float moved = saved.named_tensors()[0].second.as<float>()[0] - fit_.tensors[0].tensor.as<float>()[0];
  EXPECT_NEAR(moved, (0.1 + 0.01) / 2, 1e-4);
}

TEST_F(ServerBounds, RefusedForItsNormTheSenderHearsWhy) {
  start(federation(", max_update_norm: {action: refuse, absolute: 0.5}"));
  good_->send(encode(result("good", 1.0f)));
  other_->send(encode(result("other", 0.01f)));
  const Message reject = expect_message(*good_, MessageType::reject);
  EXPECT_THAT(std::get<std::string>(reject.config.at("reason")),
              HasSubstr("round 1 result refused: update norm 1 exceeds server.max_update_norm's bound 0.5"));
  runner_.join();
  EXPECT_THAT(log(), HasSubstr("round 1/1"));
}

// fedadam with a server learning rate of 1e300 overflows f32: the round is logged and skipped, the
// adapter stays the starting one, and no checkpoint holds the overflow.
TEST_F(ServerBounds, ANonFiniteAggregateIsNotCommitted) {
  start(federation(", strategy: {name: fedadam, eta: 1.0e+300}"));
  good_->send(encode(result("good", 0.01f)));
  other_->send(encode(result("other", 0.02f)));
  runner_.join();
  EXPECT_THAT(log(), HasSubstr("round 1 not committed: the aggregate's tensor"));
  EXPECT_THAT(log(), HasSubstr("is inf; the global adapter stays as it was"));
  EXPECT_THAT(log(), Not(HasSubstr("round 1/1 |")));
  EXPECT_FALSE(std::filesystem::exists(dir_.path("out/checkpoint")));
  const LoraAdapter saved =
      LoraAdapter::load_peft(dir_.path("out/adapter"), LlamaConfig::load(dir_.path("base")), DType::f32);
  for (size_t t = 0; t < fit_.tensors.size(); ++t)
    EXPECT_EQ(test::relative_error(saved.named_tensors()[t].second, fit_.tensors[t].tensor), 0.0) << t;
  EXPECT_TRUE(server_->history().empty());
}

}  // namespace
}  // namespace fe::fed
