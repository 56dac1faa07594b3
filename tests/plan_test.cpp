// fedengine plan: the scripts for a participant spread over two GPU nodes — their content, their
// environment, and that bash runs them as intended.
#include "fed/plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_files.h"
#include "tests/test_util.h"

namespace fe::fed {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
namespace fs = std::filesystem;

class Plan : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.path("base"));
    std::ofstream(dir_.path("alice.jsonl")) << "{}\n";
    std::ofstream(dir_.path("bob.jsonl")) << "{}\n";
    std::ofstream(dir_.path("federation.yaml"))
        << "model: base\ntokenizer: base\noutput: {dir: out}\n"
           "server: {address: 'tcp://10.0.0.9:5555', min_clients: 2, min_results: 2}\n"
           "network: {infiniband: false, socket_ifname: eth1, ib_hca: mlx5_0, env: [NCCL_DEBUG=INFO]}\n"
           "launch: ssh\n"
           "participants:\n"
           "  - name: alice\n"
           "    data: {train: alice.jsonl}\n"
           "    master_port: 29600\n"
           "    nodes: [{host: 10.0.0.1, gpus: [0, 1]}, {host: 10.0.0.2, gpus: [2, 3]}]\n"
           "  - name: bob\n"
           "    data: {train: bob.jsonl}\n"
           "    network: {infiniband: true}\n";
    config_ = read_federation_config(dir_.path("federation.yaml"));
  }

  std::string script(const std::string& name, const std::string& fedengine = "/opt/fe/bin/fedengine") {
    for (const PlannedScript& s : plan_federation(config_, fedengine))
      if (s.file_name == name) return s.content;
    ADD_FAILURE() << "no script " << name;
    return "";
  }

  test::TempDir dir_;
  FederationConfig config_;
};

TEST_F(Plan, OneScriptPerNodeWithItsRankEnvironment) {
  std::vector<std::string> names;
  for (const PlannedScript& s : plan_federation(config_, "fedengine")) names.push_back(s.file_name);
  EXPECT_EQ(names, (std::vector<std::string>{"server.sh", "alice-node0.sh", "alice-node1.sh", "bob.sh"}));

  const std::string node1 = script("alice-node1.sh");
  EXPECT_THAT(node1, AllOf(HasSubstr("node 1 of 2 (10.0.0.2): ranks 2..3 of 4"),
                           HasSubstr("export WORLD_SIZE='4'\n"), HasSubstr("export LOCAL_WORLD_SIZE='2'\n"),
                           HasSubstr("export MASTER_ADDR='10.0.0.1'\n"), HasSubstr("export MASTER_PORT='29600'\n"),
                           HasSubstr("export CUDA_VISIBLE_DEVICES='2,3'\n"), HasSubstr("export NCCL_IB_DISABLE='1'\n"),
                           HasSubstr("export NCCL_SOCKET_IFNAME='eth1'\n"), HasSubstr("export GLOO_SOCKET_IFNAME='eth1'\n"),
                           HasSubstr("export NCCL_IB_HCA='mlx5_0'\n"), HasSubstr("export NCCL_DEBUG='INFO'\n"),
                           HasSubstr("exec '/opt/fe/bin/fedengine' client '" + dir_.path("federation.plan-alice-node1.yaml") +
                                     "' --name 'alice' --node 1 \"$@\"\n")));
  EXPECT_THAT(script("alice-node0.sh"), AllOf(HasSubstr("export CUDA_VISIBLE_DEVICES='0,1'\n"), HasSubstr("--node 0"),
                                              HasSubstr("rank 0 connects to tcp://10.0.0.9:5555")));
  // A participant's own network settings override the shared ones key by key.
  EXPECT_THAT(script("bob.sh"), AllOf(HasSubstr("export NCCL_IB_DISABLE='0'\n"), HasSubstr("export NCCL_SOCKET_IFNAME='eth1'\n"),
                                      HasSubstr("export WORLD_SIZE='1'\n"), Not(HasSubstr("CUDA_VISIBLE_DEVICES"))));
}

// Runs a node script with a stand-in for fedengine that prints its arguments and environment.
TEST_F(Plan, BashRunsTheScriptWithTheConfigAndEnvironmentInPlace) {
  const std::string fake = dir_.path("fake-fedengine");
  std::ofstream(fake) << "#!/bin/sh\necho \"args: $*\"\necho \"rank env: $WORLD_SIZE $MASTER_ADDR $CUDA_VISIBLE_DEVICES $NCCL_IB_HCA\"\n";
  fs::permissions(fake, fs::perms::owner_all);
  write_plan(plan_federation(config_, fake), dir_.path("plan"));
  EXPECT_EQ(fs::status(dir_.path("plan/alice-node1.sh")).permissions(),
            fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                fs::perms::others_exec);
  const std::string original = test::read_file(dir_.path("federation.yaml"));
  // The machine's own file at the YAML's path stays as it is: the script brings its copy beside it.
  std::ofstream(dir_.path("federation.yaml"), std::ios::trunc) << "# this machine's own file\n";

  const std::string run = "bash " + dir_.path("plan/alice-node1.sh") + " --server tcp://10.0.0.9:6000 > " + dir_.path("out.txt") + " 2>&1";
  ASSERT_EQ(std::system(run.c_str()), 0) << test::read_file(dir_.path("out.txt"));
  EXPECT_THAT(test::read_file(dir_.path("out.txt")),
              AllOf(HasSubstr("args: client " + dir_.path("federation.plan-alice-node1.yaml") +
                              " --name alice --node 1 --server tcp://10.0.0.9:6000"),
                    HasSubstr("rank env: 4 10.0.0.1 2,3 mlx5_0")));
  EXPECT_EQ(test::read_file(dir_.path("federation.plan-alice-node1.yaml")), original);
  EXPECT_EQ(test::read_file(dir_.path("federation.yaml")), "# this machine's own file\n");
  // The node recorded its PID where `run` looks for it to stop the node.
  const std::string pid_file_text = dir_.path("pid.txt");
  ASSERT_EQ(std::system(("bash -c 'cat " + pid_file(config_, config_.participant("alice"), 1) + "' > " + pid_file_text).c_str()), 0);
  EXPECT_FALSE(test::read_file(pid_file_text).empty());

  // A node whose data is missing says which file, and starts nothing.
  fs::remove(dir_.path("alice.jsonl"));
  ASSERT_NE(std::system(run.c_str()), 0);
  EXPECT_THAT(test::read_file(dir_.path("out.txt")),
              AllOf(HasSubstr("missing its training data: " + dir_.path("alice.jsonl")), Not(HasSubstr("args:"))));
}

TEST_F(Plan, WarnsThatAServerPortOfZeroCannotBeInTheScripts) {
  EXPECT_TRUE(plan_warnings(config_).empty());
  std::string yaml = test::read_file(dir_.path("federation.yaml"));
  yaml.replace(yaml.find("10.0.0.9:5555"), 13, "10.0.0.9:0");
  test::write_file(dir_.path("federation.yaml"), yaml);
  const std::vector<std::string> warnings = plan_warnings(read_federation_config(dir_.path("federation.yaml")));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], AllOf(HasSubstr("tcp://10.0.0.9:0"), HasSubstr("port 0"), HasSubstr("--server")));
}

}  // namespace
}  // namespace fe::fed
