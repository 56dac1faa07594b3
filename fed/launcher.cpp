#include "fed/launcher.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <ostream>
#include <thread>

#include "fed/plan.h"
#include "fed/preflight.h"
#include "fed/processes.h"
#include "fed/server.h"
#include "fed/transport.h"

namespace fe::fed {
namespace {

namespace fs = std::filesystem;

std::string node_label(const ParticipantConfig& p, size_t node) {
  return p.nodes.size() == 1 ? p.name : p.name + " node " + std::to_string(node);
}

fs::path node_log(const FederationConfig& config, const ParticipantConfig& p, size_t node) {
  return participant_dir(config, p) / (node == 0 ? std::string("client.log") : "node" + std::to_string(node) + ".log");
}

// Every node of every participant: local nodes as children of this process, remote nodes over ssh
// (their plan script piped to `bash -s` on the host) or, with launch: manual, by the user.
class Participants {
 public:
  Participants(const FederationConfig& config, const std::string& config_path, const std::string& self_executable,
               const std::string& endpoint, std::ostream& log)
      : config_(config), log_(log) {
    for (const ParticipantConfig& p : config.participants) {
      fs::create_directories(participant_dir(config, p));
      for (size_t node = 0; node < p.nodes.size(); ++node) {
        if (is_local_host(p.nodes[node].host)) {
          start_local(config_path, self_executable, endpoint, p, node);
          continue;
        }
        const fs::path script = write_node_script(p, node);
        if (p.launch.mode == LaunchMode::ssh) {
          start_over_ssh(p, node, script, remote_endpoint(endpoint));
        } else {
          log_ << "[run] start " << node_label(p, node) << " on " << p.nodes[node].host << " with " << script.string() << std::endl;
        }
      }
    }
  }

  ~Participants() { stop(std::chrono::seconds(0)); }

  // `on_exit` hears of every node that ended: its participant and what to report (for a failure,
  // with the end of its log). It does not write to the log itself: it runs on a watcher thread.
  void watch(const std::function<void(const std::string& participant, const std::string& report)>& on_exit) {
    for (const Children::Exit& exit : children_.reap()) {
      std::string report = exit.name + " stopped (" + exit.how + ")";
      if (exit.failed) report += "; the end of " + exit.log + ":\n" + tail_of(exit.log, 8);
      on_exit(participant_of_.at(exit.name), report);
    }
  }

  // Waits up to `grace` for the nodes to leave by themselves (the server told them to), then
  // terminates them. A remote node whose ssh session is still open is stopped on its host through
  // its pid file (ending the ssh session alone would leave it running there).
  void stop(std::chrono::seconds grace) {
    children_.wait(grace);
    for (const auto& [p, node] : remote_)
      if (children_.running(node_label(*p, node))) stop_remote(*p, node);
    remote_.clear();
    children_.stop_all(std::chrono::seconds(0));
  }

 private:
  void start_local(const std::string& config_path, const std::string& exe, const std::string& endpoint,
                   const ParticipantConfig& p, size_t node) {
    const fs::path log = node_log(config_, p, node);
    ProcessSpec spec{.args = {exe, "client", config_path, "--name", p.name, "--node", std::to_string(node), "--server", endpoint},
                     .output_file = log.string(),
                     .end_with_parent = true};
    add(spawn_process(spec), p, node, log);
  }

  // The node's plan script, with this participant's fedengine command for its hosts.
  fs::path write_node_script(const ParticipantConfig& p, size_t node) {
    const std::string name = node_script_name(p, node);
    for (PlannedScript& script : plan_federation(config_, p.launch.remote_fedengine))
      if (script.file_name == name) write_plan({script}, plan_dir().string());
    return plan_dir() / name;
  }

  fs::path plan_dir() const { return fs::path(config_.shared.output_dir) / "plan"; }

  // What a node on another host connects to: the bound endpoint (its real port, when the config
  // said 0), which must not be a wildcard address.
  std::string remote_endpoint(const std::string& bound) {
    if (bound.find("://0.0.0.0:") != std::string::npos || bound.find("://[::]:") != std::string::npos ||
        bound.find("://*:") != std::string::npos)
      throw Error(config_.path + ": server.address " + config_.server.address +
                  " listens on every interface; name the address the participants' hosts reach it by");
    if (is_loopback_endpoint(bound) && !warned_loopback_) {
      log_ << "[run] warning: nodes on other hosts will connect to " << bound
           << ", a loopback address (fine only through an ssh tunnel)" << std::endl;
      warned_loopback_ = true;
    }
    return bound;
  }

  // The configured ssh command run by sh (so its own quoting works), then -- host command.
  static std::vector<std::string> ssh_args(const ParticipantConfig& p, size_t node, const std::string& remote_command) {
    return {"sh", "-c", p.launch.ssh_command + " \"$@\"", "ssh", "--", p.nodes[node].host, remote_command};
  }

  void start_over_ssh(const ParticipantConfig& p, size_t node, const fs::path& script, const std::string& endpoint) {
    const fs::path log = node_log(config_, p, node);
    ProcessSpec spec{.args = ssh_args(p, node, "bash -s -- --server " + endpoint), .output_file = log.string(),
                     .input_file = script.string()};
    add(spawn_process(spec), p, node, log);
    remote_.emplace_back(&p, node);
    log_ << "[run] started " << node_label(p, node) << " on " << p.nodes[node].host << " over ssh (" << script.string() << ")"
         << std::endl;
  }

  void stop_remote(const ParticipantConfig& p, size_t node) {
    try {
      Children once;
      once.add(spawn_process({.args = ssh_args(p, node, stop_node_command(config_, p, node))}), "stop");
      once.stop_all(std::chrono::seconds(10));
    } catch (const std::exception& e) {
      log_ << "[run] could not stop " << node_label(p, node) << " on " << p.nodes[node].host << ": " << e.what() << std::endl;
    }
  }

  void add(pid_t pid, const ParticipantConfig& p, size_t node, const fs::path& log) {
    const std::string label = node_label(p, node);
    children_.add(pid, label, log.string());
    participant_of_[label] = p.name;
  }

  const FederationConfig& config_;
  std::ostream& log_;
  Children children_;
  std::map<std::string, std::string> participant_of_;                 // node label → participant
  std::vector<std::pair<const ParticipantConfig*, size_t>> remote_;    // started over ssh
  bool warned_loopback_ = false;
};

}  // namespace

int launch_federation(const std::string& config_path, const std::string& self_executable, bool resume, std::ostream& log) {
  const FederationConfig config = read_federation_config(config_path);
  check_local_participants(config);  // before anything starts: no waiting for a participant that cannot
  const std::atomic<bool>* stop = stop_on_signals();
  Server server(config, resume, log);
  Participants participants(config, config_path, self_executable, server.endpoint(), log);
  const std::jthread watcher([&](std::stop_token done) {  // stopped however the server ends
    while (!done.stop_requested()) {
      participants.watch([&](const std::string& name, const std::string& report) { server.participant_exited(name, report); });
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  server.run(stop);
  if (*stop) log << "[run] stopped by a signal" << std::endl;
  participants.stop(std::chrono::seconds(10));
  return *stop ? 130 : 0;
}

}  // namespace fe::fed
