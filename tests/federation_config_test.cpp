// The federation YAML's participant nodes, network and launch settings: defaults, and errors that
// name the file, the key and what is expected.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "fed/federation_config.h"
#include "tests/test_util.h"

namespace fe::fed {
namespace {

using ::testing::HasSubstr;

class FederationConfigNodes : public ::testing::Test {
 protected:
  FederationConfig read(const std::string& participant_lines, const std::string& top = "") {
    std::filesystem::create_directories(dir_.path("base"));
    std::ofstream(dir_.path("f.yaml")) << "model: base\ntokenizer: base\noutput: {dir: out}\n" << top
                                       << "participants:\n  - name: alice\n    data: {train: a.jsonl}\n"
                                       << participant_lines;
    return read_federation_config(dir_.path("f.yaml"));
  }
  std::string error_of(const std::string& participant_lines, const std::string& top = "") {
    try {
      read(participant_lines, top);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }
  test::TempDir dir_;
};

TEST_F(FederationConfigNodes, NamesThatAreNotSafeInScriptsAreRefused) {
  std::ofstream(dir_.path("g.yaml")) << "model: base\ntokenizer: base\noutput: {dir: out}\n"
                                     << "participants:\n  - name: \"x$(reboot)\"\n    data: {train: a.jsonl}\n";
  std::filesystem::create_directories(dir_.path("base"));
  try {
    read_federation_config(dir_.path("g.yaml"));
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("participants[0].name: use letters, digits"));
  }
}

TEST_F(FederationConfigNodes, DefaultIsOneRankOnThisMachine) {
  const ParticipantConfig p = read("").participants.at(0);
  ASSERT_EQ(p.nodes.size(), 1u);
  EXPECT_EQ(p.nodes[0].host, "localhost");
  EXPECT_EQ(p.world_size(), 1);
  EXPECT_FALSE(p.uses_gpus());
  EXPECT_EQ(p.launch.mode, LaunchMode::manual);
  EXPECT_TRUE(p.network.environment().empty());
}

TEST_F(FederationConfigNodes, RanksAcrossNodesAndTheirEnvironment) {
  const ParticipantConfig p = read("    nodes: [{host: 10.1.0.1, gpus: [0, 1, 2]}, {host: 10.1.0.2, gpus: [1]}]\n"
                                   "    master_port: 29777\n", "network: {socket_ifname: ib0}\n").participants.at(0);
  EXPECT_EQ(p.world_size(), 4);
  EXPECT_EQ(p.first_rank(1), 3);
  EXPECT_TRUE(p.uses_gpus());
  EXPECT_EQ(p.train.device, Device::cuda);  // GPU ranks train on their GPUs
  EXPECT_EQ(read("").participants.at(0).train.device, Device::cpu);
  EXPECT_EQ(read("    train: {device: cuda}\n").participants.at(0).train.device, Device::cuda);  // one GPU rank
  const auto env = node_environment(p, 1);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "1"}, {"MASTER_ADDR", "10.1.0.1"}, {"MASTER_PORT", "29777"},
      {"CUDA_VISIBLE_DEVICES", "1"}, {"NCCL_SOCKET_IFNAME", "ib0"}, {"GLOO_SOCKET_IFNAME", "ib0"}};
  EXPECT_EQ(env, expected);
  // Ranks on this machine only: the rendezvous stays on loopback.
  const ParticipantConfig local = read("    nodes: [{host: localhost, ranks: 3}]\n").participants.at(0);
  EXPECT_EQ(node_environment(local, 0)[2], (std::pair<std::string, std::string>{"MASTER_ADDR", "127.0.0.1"}));
}

TEST_F(FederationConfigNodes, BadNodesAreRefusedWithTheKey) {
  EXPECT_THAT(error_of("    nodes: [{host: a, gpus: [0]}, {host: b, ranks: 2}]\n"),
              HasSubstr("participants[0].nodes[1].gpus: either every node of a participant lists gpus"));
  EXPECT_THAT(error_of("    nodes: [{host: a, gpus: [0, 1], ranks: 3}]\n"), HasSubstr("one rank per listed GPU (2)"));
  EXPECT_THAT(error_of("    nodes: [{host: a}, {host: a}]\n"), HasSubstr("\"a\" is listed twice"));
  EXPECT_THAT(error_of("    nodes: [{host: a, gpus: [0]}]\n    adapter: {method: full}\n"),
              HasSubstr("participants[0].nodes: GPU ranks train LoRA adapters only"));
  EXPECT_THAT(error_of("    train: {device: tpu}\n"), HasSubstr("train.device"));
  EXPECT_THAT(error_of("    train: {device: cuda}\n    nodes: [{host: localhost, ranks: 2}]\n"),
              HasSubstr("participants[0].nodes: several GPU ranks need their GPUs listed"));
  EXPECT_THAT(error_of("    train: {device: cuda}\n    adapter: {method: full}\n"),
              HasSubstr("full-parameter training (adapter.method: full) runs on the CPU only"));
  EXPECT_THAT(error_of("    nodes: [{host: localhost, ranks: 2}, {host: gpu-b}]\n"),
              HasSubstr("the first node hosts rank 0's rendezvous"));
  EXPECT_THAT(error_of("    nodes: [{host: a, ranks: 0}]\n"), HasSubstr("ranks: must be in [1, 4096]"));
  EXPECT_THAT(error_of("    master_port: 70000\n"), HasSubstr("master_port"));
  EXPECT_THAT(error_of("", "network: {env: [NCCL DEBUG=INFO]}\n"), HasSubstr("network.env: expected NAME=value entries"));
  EXPECT_THAT(error_of("", "launch: telnet\n"), HasSubstr("launch"));
  EXPECT_THAT(error_of("    nodes: [{hots: a}]\n"), HasSubstr("unknown key"));
  // Nothing a shell or ssh would read as an option or a command.
  EXPECT_THAT(error_of("    nodes: [{host: -oProxyCommand=x}]\n"), HasSubstr("host: expected a host name"));
  EXPECT_THAT(error_of("    nodes: [{host: \"a;b\"}]\n"), HasSubstr("host: expected a host name"));
  EXPECT_THAT(error_of("    nodes: [{host: localhost, ranks: 2}]\n    master_port: 29600\n"
                       "  - name: bob\n    data: {train: b.jsonl}\n    nodes: [{host: 127.0.0.1, ranks: 2}]\n    master_port: 29600\n"),
              HasSubstr("participants[1].master_port: 29600 on localhost is already participant alice's rendezvous port"));
  EXPECT_THAT(error_of("", "server: {monitor: \"127.0.0.1:99999\"}\n"), HasSubstr("server.monitor: expected host:port"));
}

}  // namespace
}  // namespace fe::fed
