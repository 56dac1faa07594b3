#include "fed/processes.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>

#include "core/error.h"

extern char** environ;

namespace fe::fed {
namespace {

// This process's environment with `overrides` set (replacing variables of the same name) and
// `removed` unset.
std::vector<std::string> environment_with(const std::vector<std::pair<std::string, std::string>>& overrides,
                                          const std::string& removed) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    bool replaced = name == removed;
    for (const auto& [key, value] : overrides) replaced = replaced || key == name;
    if (!replaced) env.push_back(entry);
  }
  for (const auto& [key, value] : overrides) env.push_back(key + "=" + value);
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

std::atomic<bool> g_stop_requested = false;
std::atomic<int64_t> g_first_signal_ns = 0;

int64_t monotonic_ns() {  // clock_gettime is async-signal-safe
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

void request_stop(int signal) {
  if (!g_stop_requested.exchange(true)) {
    g_first_signal_ns = monotonic_ns();
    constexpr char kNote[] = "fedengine: stopping cleanly; Ctrl-C again (after a second) quits at once\n";
    [[maybe_unused]] const ssize_t written = write(STDERR_FILENO, kNote, sizeof kNote - 1);
    return;
  }
  if (monotonic_ns() - g_first_signal_ns < 1'000'000'000) return;
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

}  // namespace

pid_t spawn_process(const ProcessSpec& spec) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!spec.output_file.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, spec.output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  }
  if (!spec.input_file.empty()) posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, spec.input_file.c_str(), O_RDONLY, 0);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);
  std::vector<std::pair<std::string, std::string>> overrides = spec.env;
  if (spec.end_with_parent) overrides.emplace_back(kParentPidVariable, std::to_string(getpid()));
  // Without end_with_parent the child must not inherit this process's own parent link.
  std::vector<std::string> args = spec.args, env = environment_with(overrides, spec.end_with_parent ? "" : kParentPidVariable);
  std::vector<char*> argv = c_strings(args), envp = c_strings(env);
  pid_t pid = 0;
  const int error = posix_spawnp(&pid, args.at(0).c_str(), &actions, &attributes, argv.data(), envp.data());
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) throw Error("cannot start " + spec.args.at(0) + ": " + std::strerror(error));
  return pid;
}

void end_with_parent() {
  const char* parent = std::getenv(kParentPidVariable);
  if (!parent) return;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (std::to_string(getppid()) != parent) std::exit(1);  // it died before prctl took effect
}

std::string tail_of(const std::string& file, size_t lines) {
  std::ifstream in(file);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += "    " + all[i] + "\n";
  return out;
}

Children::~Children() { stop_all(std::chrono::milliseconds(0)); }

void Children::add(pid_t pid, std::string name, std::string log) {
  std::lock_guard lock(mutex_);
  running_[pid] = {std::move(name), std::move(log)};
}

std::vector<Children::Exit> Children::reap() {
  std::lock_guard lock(mutex_);
  std::vector<Exit> exits;
  for (auto it = running_.begin(); it != running_.end();) {
    int status = 0;
    if (waitpid(it->first, &status, WNOHANG) != it->first) {
      ++it;
      continue;
    }
    const bool failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    exits.push_back({it->second.name, it->second.log, failed, describe_status(status)});
    it = running_.erase(it);
  }
  return exits;
}

bool Children::empty() const {
  std::lock_guard lock(mutex_);
  return running_.empty();
}

bool Children::running(const std::string& name) const {
  std::lock_guard lock(mutex_);
  for (const auto& [pid, child] : running_)
    if (child.name == name) return true;
  return false;
}

void Children::wait(std::chrono::milliseconds grace) {
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (!empty() && std::chrono::steady_clock::now() < deadline) {
    reap();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  reap();
}

void Children::terminate_all() {
  std::lock_guard lock(mutex_);
  for (const auto& [pid, child] : running_) kill(-pid, SIGTERM);
}

void Children::stop_all(std::chrono::milliseconds grace) {
  wait(grace);
  if (empty()) return;
  terminate_all();
  wait(std::chrono::seconds(5));  // time to leave cleanly after SIGTERM
  std::lock_guard lock(mutex_);
  for (const auto& [pid, child] : running_) kill(-pid, SIGKILL);
  for (const auto& [pid, child] : running_) waitpid(pid, nullptr, 0);
  running_.clear();
}

const std::atomic<bool>* stop_on_signals() {
  g_stop_requested = false;
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);
  return &g_stop_requested;
}

}  // namespace fe::fed
