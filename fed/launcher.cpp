#include "fed/launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <thread>

#include "fed/server.h"

extern char** environ;

namespace fe::fed {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_stop_requested = false;

void request_stop(int) { g_stop_requested = true; }

pid_t spawn_participant(const std::string& exe, const std::string& config, const std::string& name,
                        const std::string& endpoint, const fs::path& log_file) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<std::string> args = {exe, "client", config, "--name", name, "--server", endpoint};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // A process group of its own: Ctrl-C in the terminal reaches only the launcher, which then shuts
  // the participants down through the server instead of killing them mid-write.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);
  pid_t pid = 0;
  const int error = posix_spawn(&pid, exe.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) throw Error("cannot start participant " + name + " (" + exe + "): " + std::strerror(error));
  return pid;
}

std::string tail_of(const fs::path& file, size_t lines) {
  std::ifstream in(file);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += "    " + all[i] + "\n";
  return out;
}

// Watches the children: reports one that fails, reaps them all.
class Children {
 public:
  ~Children() { stop_all(std::chrono::seconds(0)); }
  void add(pid_t pid, std::string name, fs::path log) { running_[pid] = {std::move(name), std::move(log)}; }
  // Reaps the children that have exited (only ours) and reports the ones that failed.
  void reap(std::ostream& log) {
    for (auto it = running_.begin(); it != running_.end();) {
      int status = 0;
      if (waitpid(it->first, &status, WNOHANG) != it->first) {
        ++it;
        continue;
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        log << "[run] participant " << it->second.name << " stopped ("
            << (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status)) : "killed by a signal")
            << "); the end of " << it->second.log.string() << ":\n" << tail_of(it->second.log, 8) << std::flush;
      it = running_.erase(it);
    }
  }
  void reap_quietly() {
    for (auto it = running_.begin(); it != running_.end();)
      it = waitpid(it->first, nullptr, WNOHANG) == it->first ? running_.erase(it) : std::next(it);
  }
  // Waits up to `grace` for the children to exit by themselves, then terminates the rest.
  void stop_all(std::chrono::seconds grace) {
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (!running_.empty() && std::chrono::steady_clock::now() < deadline) {
      reap_quietly();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (const auto& [pid, child] : running_) kill(pid, SIGTERM);
    for (const auto& [pid, child] : running_) waitpid(pid, nullptr, 0);
    running_.clear();
  }

 private:
  struct Child {
    std::string name;
    fs::path log;
  };
  std::map<pid_t, Child> running_;
};

}  // namespace

int launch_federation(const std::string& config_path, const std::string& self_executable, bool resume, std::ostream& log) {
  const FederationConfig config = read_federation_config(config_path);
  g_stop_requested = false;
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);
  Server server(config, resume, log);
  Children children;
  for (const ParticipantConfig& p : config.participants) {
    const fs::path dir = fs::path(config.shared.output_dir) / "participants" / p.name;
    fs::create_directories(dir);
    children.add(spawn_participant(self_executable, config_path, p.name, server.endpoint(), dir / "client.log"), p.name,
                 dir / "client.log");
  }
  std::atomic<bool> watching = true;
  std::thread watcher([&] {
    while (watching) {
      children.reap(log);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  int status = 0;
  try {
    server.run(&g_stop_requested);
    if (g_stop_requested) {
      log << "[run] stopped by a signal" << std::endl;
      status = 130;
    }
  } catch (...) {
    watching = false;
    watcher.join();
    children.stop_all(std::chrono::seconds(0));
    throw;
  }
  watching = false;
  watcher.join();
  children.stop_all(std::chrono::seconds(10));
  return status;
}

}  // namespace fe::fed
