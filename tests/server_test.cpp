// The server against hostile or confused peers: every bad message is refused with a logged
// reason, and the server keeps running and finishes its round with the good participants.
#include "fed/server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include "engine/synthetic_data.h"
#include "fed/adapter_wire.h"
#include "fed/transport.h"
#include "tests/server_test_util.h"
#include "tests/test_util.h"

namespace fe::fed {
namespace {

using std::chrono::milliseconds;
using test::expect_message;
using test::SharedLog;
using ::testing::AllOf;
using ::testing::HasSubstr;

class ServerUnderAttack : public ::testing::Test {
 protected:
  void SetUp() override {
    const LlamaConfig c = test::tiny_llama({.hidden = 16, .intermediate = 32, .heads = 2, .kv_heads = 1, .vocab = 16});
    LlamaWeights::random(c, 1, DType::f32).save(dir_.path("base"), DType::f32);
    std::ofstream(dir_.path("train.jsonl")) << R"({"input_ids": [1, 2, 3]})" << "\n";
    config_ = federation(30, "{name: good, train: {lr: 0.25, steps: 7}}, {name: other}, {name: absent}");
  }

  // One round of two results, within round_timeout seconds, among `participants`.
  FederationConfig federation(int round_timeout, const std::string& participants) {
    std::ofstream(dir_.path("fed.yaml")) << "model: base\ndata: {train: train.jsonl, format: tokenized}\n"
                                            "adapter: {rank: 2, targets: [q_proj]}\noutput: {dir: out}\n"
                                            "server: {address: 'tcp://127.0.0.1:0', rounds: 1, min_clients: 2,"
                                            " min_results: 2, heartbeat: 5, round_timeout: "
                                         << round_timeout << "}\nparticipants: [" << participants << "]\n";
    return read_federation_config(dir_.path("fed.yaml"));
  }

  test::TempDir dir_;
  FederationConfig config_;
};

TEST_F(ServerUnderAttack, RefusesEveryKindOfBadMessageAndFinishesTheRound) {
  SharedLog log_buffer;
  std::ostream log(&log_buffer);
  Server server(config_, false, log);
  std::thread runner([&] { server.run(); });

  ClientSocket good(server.endpoint(), std::nullopt, ""), other(server.endpoint(), std::nullopt, "");
  ClientSocket rogue(server.endpoint(), std::nullopt, "");
  const auto join = [](const std::string& name, double examples) {
    Message m{.type = MessageType::join, .client_id = name};
    m.metrics["num_examples"] = examples;
    return encode(m);
  };
  good.send(join("good", 0));  // no data: refused
  good.send(join("good", 10));
  other.send(join("other", 10));
  expect_message(good, MessageType::welcome);
  const Message fit = expect_message(good, MessageType::fit);
  ASSERT_EQ(fit.round, 1);
  // Each participant's round settings travel with its fit message (its overrides included).
  EXPECT_EQ(std::get<int64_t>(fit.config.at("steps")), 7);
  EXPECT_EQ(std::get<double>(fit.config.at("lr")), 0.25);
  const Message other_fit = expect_message(other, MessageType::fit);
  EXPECT_EQ(std::get<int64_t>(other_fit.config.at("steps")), 100);

  auto result_from = [&](const std::string& who) {
    Message r{.type = MessageType::fit_result, .round = 1, .client_id = who, .num_examples = 4};
    r.tensors = fit.tensors;
    return r;
  };
  auto with = [&](const std::function<void(Message&)>& spoil) {
    Message m = result_from("good");
    spoil(m);
    return encode(m);
  };
  rogue.send("this is not msgpack");
  rogue.send(encode(Message{.type = MessageType::join, .client_id = "mallory"}));
  rogue.send(encode(result_from("absent")));
  good.send(with([](Message& m) { m.round = 7; }));
  good.send(with([](Message& m) { m.tensors[0].tensor = Tensor::zeros(Shape{3, 3}, DType::f32); }));
  good.send(with([](Message& m) { m.tensors.pop_back(); }));
  good.send(with([](Message& m) { m.num_examples = 0; }));
  good.send(with([](Message& m) {
    m.tensors[0].tensor = m.tensors[0].tensor.clone();
    m.tensors[0].tensor.as<float>()[0] = std::nanf("");
  }));
  good.send(encode(Message{.type = MessageType::fit, .round = 1, .client_id = "good"}));
  good.send(encode(result_from("good")));  // the real result
  good.send(encode(result_from("good")));  // and a duplicate of it
  std::this_thread::sleep_for(milliseconds(300));
  other.send(encode(result_from("other")));
  runner.join();

  const std::string text = log_buffer.text();
  EXPECT_THAT(text, HasSubstr("num_examples must be a positive count"));
  EXPECT_THAT(text, HasSubstr("undecodable message"));
  EXPECT_THAT(text, HasSubstr("is nan"));
  EXPECT_THAT(text, HasSubstr("mallory: no participant of this name"));
  EXPECT_THAT(text, HasSubstr("absent: not sampled for round 1"));
  EXPECT_THAT(text, HasSubstr("result for round 7 while round 1 is open"));
  EXPECT_THAT(text, HasSubstr("num_examples must be positive"));
  EXPECT_THAT(text, HasSubstr("unexpected message type fit"));
  EXPECT_THAT(text, HasSubstr("duplicate result for round 1"));
  EXPECT_THAT(text, HasSubstr("round 1/1 | 2 of 2 results"));
  EXPECT_TRUE(std::filesystem::exists(dir_.path("out/adapter/adapter_model.safetensors")));
  // the wrong shape and the missing tensor: two refusals naming a tensor
  EXPECT_GE(std::count(text.begin(), text.end(), '\n'), 14) << text;
}

// A second server on the same run directory is refused before it opens anything there: the
// first one's metrics.jsonl keeps its lines.
TEST_F(ServerUnderAttack, ASecondServerOnTheRunDirectoryIsRefusedBeforeTouchingIt) {
  std::ostringstream log;
  const Server first(config_, false, log);
  std::ofstream(dir_.path("out/metrics.jsonl"), std::ios::app) << "{\"round\": 0}\n";
  try {
    const Server second(config_, false, log);
    ADD_FAILURE() << "a second server started on " << dir_.path("out");
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("PID " + std::to_string(getpid())), HasSubstr("server.lock")));
  }
  std::ifstream metrics(dir_.path("out/metrics.jsonl"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(metrics), {}), "{\"round\": 0}\n");
}

// "rejoined" follows a line that said the participant was gone: silence is logged when the
// roster's gone rule sees it, not only shown in the status table.
TEST_F(ServerUnderAttack, RejoinedFollowsTheLineThatSaidItWasGone) {
  std::ofstream(dir_.path("fed.yaml")) << "model: base\ndata: {train: train.jsonl, format: tokenized}\n"
                                          "adapter: {rank: 2, targets: [q_proj]}\noutput: {dir: out}\n"
                                          "server: {address: 'tcp://127.0.0.1:0', rounds: 1, min_clients: 2,"
                                          " heartbeat: 0.1, status_every: 0}\n"
                                          "participants: [{name: good}, {name: other}]\n";
  const FederationConfig config = read_federation_config(dir_.path("fed.yaml"));
  SharedLog log_buffer;
  std::ostream log(&log_buffer);
  Server server(config, false, log);
  std::atomic<bool> stop = false;
  std::thread runner([&] { server.run(&stop); });  // waits for a second participant meanwhile
  ClientSocket good(server.endpoint(), std::nullopt, "");
  Message join{.type = MessageType::join, .client_id = "good"};
  join.metrics["num_examples"] = 10;
  good.send(encode(join));
  expect_message(good, MessageType::welcome);
  std::this_thread::sleep_for(milliseconds(600));  // silent for 3 intervals and more: gone
  good.send(encode(Message{.type = MessageType::heartbeat, .client_id = "good", .metrics = join.metrics}));
  std::this_thread::sleep_for(milliseconds(300));
  stop = true;
  runner.join();
  const std::string text = log_buffer.text();
  const size_t gone = text.find("participant good is gone: silent for"), rejoined = text.find("participant good rejoined");
  ASSERT_NE(rejoined, std::string::npos) << text;
  EXPECT_LT(gone, rejoined) << text;
}

// A kill between a round's checkpoint and its metrics line: the resumed run writes the line from
// the checkpoint before its own rounds, so metrics.jsonl has every round once.
TEST_F(ServerUnderAttack, ResumeRestoresAMetricsLineLostBetweenCheckpointAndLog) {
  auto write = [&](int rounds) {
    std::ofstream(dir_.path("fed.yaml")) << "model: base\ndata: {train: train.jsonl, format: tokenized}\n"
                                            "adapter: {rank: 2, targets: [q_proj]}\noutput: {dir: out}\n"
                                            "server: {address: 'tcp://127.0.0.1:0', rounds: "
                                         << rounds << ", min_clients: 1, heartbeat: 5, round_timeout: 30}\n"
                                                      "participants: [{name: good}]\n";
    return read_federation_config(dir_.path("fed.yaml"));
  };
  auto run_rounds = [&](const FederationConfig& config, bool resume) {
    std::ostringstream log;
    Server server(config, resume, log);
    std::thread runner([&] { server.run(); });
    ClientSocket good(server.endpoint(), std::nullopt, "");
    Message join{.type = MessageType::join, .client_id = "good"};
    join.metrics["num_examples"] = 10;
    good.send(encode(join));
    for (int64_t round = resume ? 2 : 1; round <= config.server.rounds; ++round) {
      const Message fit = expect_message(good, MessageType::fit);
      Message result{.type = MessageType::fit_result, .round = fit.round, .client_id = "good", .num_examples = 4};
      result.tensors = fit.tensors;
      good.send(encode(result));
    }
    runner.join();
  };
  const std::string metrics = dir_.path("out/metrics.jsonl");
  auto read = [&] {
    std::ifstream in(metrics);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  run_rounds(write(1), false);
  const std::string round_1 = read();
  ASSERT_THAT(round_1, HasSubstr("\"round\":1"));
  std::ofstream(metrics, std::ios::trunc) << "{\"round\":1,\"cut";  // the kill: only part of the line
  run_rounds(write(2), true);
  const std::string text = read();
  EXPECT_EQ(text.substr(0, round_1.size()), round_1);
  EXPECT_THAT(text.substr(round_1.size()), HasSubstr("\"round\":2"));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
}

// One live connection per name: a second connection speaking as "good" is refused (once in the
// log, a final reject every time) and never receives good's fit; once good's connection closes,
// the name is free again.
TEST_F(ServerUnderAttack, ASecondConnectionUnderAJoinedNameIsRefused) {
  SharedLog log_buffer;
  std::ostream log(&log_buffer);
  Server server(config_, false, log);
  std::atomic<bool> stop = false;
  std::thread runner([&] { server.run(&stop); });
  Message join{.type = MessageType::join, .client_id = "good"};
  join.metrics["num_examples"] = 10;
  auto good = std::make_unique<ClientSocket>(server.endpoint(), std::nullopt, "");
  ClientSocket rogue(server.endpoint(), std::nullopt, ""), other(server.endpoint(), std::nullopt, "");
  good->send(encode(join));
  expect_message(*good, MessageType::welcome);
  rogue.send(encode(join));
  rogue.send(encode(Message{.type = MessageType::heartbeat, .client_id = "good", .metrics = join.metrics}));
  const Message reject = expect_message(rogue, MessageType::reject);
  EXPECT_THAT(std::get<std::string>(reject.config.at("reason")), HasSubstr("connected already"));
  EXPECT_EQ(reject.config.at("final"), ConfigValue(true));
  Message other_join = join;
  other_join.client_id = "other";
  other.send(encode(other_join));
  EXPECT_EQ(expect_message(*good, MessageType::fit).round, 1);
  for (int i = 0; i < 5; ++i)  // the rogue sees rejects only
    if (auto bytes = rogue.receive(milliseconds(100))) {
      EXPECT_EQ(decode(*bytes).type, MessageType::reject);
    }

  good.reset();  // the first connection closes: the name is free
  bool admitted = false;
  for (int attempt = 0; attempt < 50 && !admitted; ++attempt) {
    rogue.send(encode(join));
    for (auto bytes = rogue.receive(milliseconds(100)); bytes && !admitted; bytes = rogue.receive(milliseconds(0)))
      admitted = decode(*bytes).type == MessageType::welcome;
  }
  EXPECT_TRUE(admitted) << log_buffer.text();
  stop = true;
  runner.join();
  const std::string text = log_buffer.text();
  size_t refusals = 0;
  for (size_t at = text.find("connected already"); at != std::string::npos; at = text.find("connected already", at + 1))
    ++refusals;
  EXPECT_EQ(refusals, 1u) << text;
}

// A round with too few results is repeated; its record counts every attempt's traffic.
TEST_F(ServerUnderAttack, RepeatedRoundCountsEveryAttempt) {
  config_ = federation(1, "{name: good}, {name: other}");
  SharedLog log_buffer;
  std::ostream log(&log_buffer);
  Server server(config_, false, log);
  std::thread runner([&] { server.run(); });
  ClientSocket good(server.endpoint(), std::nullopt, ""), other(server.endpoint(), std::nullopt, "");
  for (const auto& [socket, name] : {std::pair{&good, "good"}, std::pair{&other, "other"}}) {
    Message join{.type = MessageType::join, .client_id = name};
    join.metrics["num_examples"] = 10;
    socket->send(encode(join));
  }
  auto result_from = [](const Message& fit, const std::string& who) {
    Message r{.type = MessageType::fit_result, .round = 1, .client_id = who, .num_examples = 4};
    r.tensors = fit.tensors;
    return encode(r);
  };
  // Attempt 1: only good answers, and the round times out. Attempt 2 asks only other: good's
  // result (the same round from the same adapter) is kept.
  const Message fit = expect_message(good, MessageType::fit);
  expect_message(other, MessageType::fit);
  good.send(result_from(fit, "good"));
  expect_message(other, MessageType::fit);
  other.send(result_from(fit, "other"));
  runner.join();

  EXPECT_THAT(log_buffer.text(), HasSubstr("1 results, 2 needed; repeating the round"));
  const RoundRecord& round = server.history().back();
  EXPECT_EQ(round.round, 1);
  EXPECT_EQ(round.attempts, 2);
  EXPECT_EQ(round.contributors, (std::vector<std::string>{"good", "other"}));
  EXPECT_EQ(round.examples.size(), 2u);  // good's figures from the first attempt too
  const auto fit_bytes = static_cast<int64_t>(encode(fit).size());
  EXPECT_GE(round.bytes_sent, 3 * fit_bytes);  // two fits, then one
  EXPECT_GE(round.bytes_received, 2 * static_cast<int64_t>(result_from(fit, "good").size()));
  EXPECT_GE(round.seconds, 1.0);  // the first attempt's timeout included
  while (auto bytes = good.receive(milliseconds(100))) EXPECT_NE(decode(*bytes).type, MessageType::fit);
}

// round_timeout shorter than a participant's training: the server does not ask it again while it
// still trains, and its result, arriving in the next attempt, completes the round; nobody trains
// the round twice.
TEST_F(ServerUnderAttack, AParticipantStillTrainingIsNotAskedAgainAndItsLateResultCounts) {
  config_ = federation(1, "{name: good}, {name: slow}");
  SharedLog log_buffer;
  std::ostream log(&log_buffer);
  Server server(config_, false, log);
  std::thread runner([&] { server.run(); });
  ClientSocket good(server.endpoint(), std::nullopt, ""), slow(server.endpoint(), std::nullopt, "");
  Message join{.type = MessageType::join};
  join.metrics["num_examples"] = 10;
  for (const auto& [socket, name] : {std::pair{&good, "good"}, std::pair{&slow, "slow"}}) {
    join.client_id = name;
    socket->send(encode(join));
  }
  const Message fit = expect_message(good, MessageType::fit);
  expect_message(slow, MessageType::fit);
  Message result{.type = MessageType::fit_result, .round = 1, .client_id = "good", .num_examples = 4};
  result.tensors = fit.tensors;
  good.send(encode(result));
  // slow trains for 1.6 s, past the 1 s timeout, saying so in its heartbeats.
  Message training{.type = MessageType::heartbeat, .client_id = "slow", .metrics = join.metrics};
  training.metrics["training"] = 1;
  int fits_to_slow = 1;
  for (int i = 0; i < 8; ++i) {
    slow.send(encode(training));
    if (auto bytes = slow.receive(milliseconds(200))) fits_to_slow += decode(*bytes).type == MessageType::fit;
  }
  result.client_id = "slow";
  slow.send(encode(result));
  runner.join();
  while (auto bytes = slow.receive(milliseconds(100))) fits_to_slow += decode(*bytes).type == MessageType::fit;
  int fits_to_good = 1;
  while (auto bytes = good.receive(milliseconds(100))) fits_to_good += decode(*bytes).type == MessageType::fit;
  EXPECT_EQ(fits_to_slow, 1);
  EXPECT_EQ(fits_to_good, 1);
  ASSERT_EQ(server.history().size(), 1u) << log_buffer.text();
  EXPECT_EQ(server.history().back().contributors, (std::vector<std::string>{"good", "slow"}));
  EXPECT_EQ(server.history().back().attempts, 2);
}

// A resumed server shares data out by the volumes its checkpoint knew, before every participant
// has rejoined: max_data_volume's share follows the largest participant even while it is away.
TEST_F(ServerUnderAttack, ResumedServerKeepsTheVolumesOfParticipantsNotYetBack) {
  auto write = [&](int rounds, int min_clients) {
    std::ofstream(dir_.path("fed.yaml")) << "model: base\ndata: {train: train.jsonl, format: tokenized}\n"
                                            "adapter: {rank: 2, targets: [q_proj]}\noutput: {dir: out}\n"
                                            "partition: {strategy: max_data_volume}\n"
                                            "server: {address: 'tcp://127.0.0.1:0', rounds: " << rounds
                                         << ", min_clients: " << min_clients << ", min_results: " << min_clients
                                         << ", heartbeat: 5, round_timeout: 30}\n"
                                            "participants: [{name: big}, {name: medium}]\n";
    return read_federation_config(dir_.path("fed.yaml"));
  };
  auto join = [](ClientSocket& socket, const std::string& name, double examples) {
    Message m{.type = MessageType::join, .client_id = name};
    m.metrics["num_examples"] = examples;
    socket.send(encode(m));
  };
  auto answer = [](ClientSocket& socket, const Message& fit, const std::string& name) {
    Message r{.type = MessageType::fit_result, .round = fit.round, .client_id = name, .num_examples = 4};
    r.tensors = fit.tensors;
    socket.send(encode(r));
  };
  SharedLog log_buffer;
  std::ostream log(&log_buffer);
  {  // a run of 1 round with both: max_j n_j / rounds = 1000 examples, capped at medium's 400
    const FederationConfig first = write(1, 2);
    Server server(first, false, log);
    std::thread runner([&] { server.run(); });
    ClientSocket big(server.endpoint(), std::nullopt, ""), medium(server.endpoint(), std::nullopt, "");
    join(big, "big", 1000);
    join(medium, "medium", 400);
    const Message big_fit = expect_message(big, MessageType::fit), medium_fit = expect_message(medium, MessageType::fit);
    EXPECT_EQ(std::get<int64_t>(big_fit.config.at("examples")), 1000);
    EXPECT_EQ(std::get<int64_t>(medium_fit.config.at("examples")), 400);
    answer(big, big_fit, "big");
    answer(medium, medium_fit, "medium");
    runner.join();
  }
  // Resumed with 2 rounds and only medium back: big's 1000 still sets the share, 1000 / 2 = 500
  // capped at 400 (from medium's 400 alone it would be 200).
  const FederationConfig second = write(2, 1);
  Server server(second, true, log);
  std::thread runner([&] { server.run(); });
  ClientSocket medium(server.endpoint(), std::nullopt, "");
  join(medium, "medium", 400);
  const Message fit = expect_message(medium, MessageType::fit);
  EXPECT_EQ(fit.round, 2);
  EXPECT_EQ(std::get<int64_t>(fit.config.at("examples")), 400) << log_buffer.text();
  answer(medium, fit, "medium");
  runner.join();
}

}  // namespace
}  // namespace fe::fed
