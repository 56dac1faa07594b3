// fed/processes.h — the child processes of `fedengine run` and of a participant's node: started
// in process groups of their own, watched, reported when they fail, stopped together.
//
// A child's group of its own means Ctrl-C in the terminal reaches only the parent, which then
// shuts its children down in order (through the server, or by SIGTERM) instead of having them
// killed mid-write. stop_all() signals whole groups, so a child's own children go too.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <iosfwd>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace fe::fed {

struct ProcessSpec {
  std::vector<std::string> args;                             // args[0]: the executable (a path)
  std::vector<std::pair<std::string, std::string>> env;      // set on top of this process's environment
  std::string output_file;                                   // stdout and stderr go here; empty: inherited
  std::string input_file;                                    // stdin comes from here; empty: inherited
  bool end_with_parent = false;                              // see end_with_parent() below
};

// Starts the process in a new process group; Error naming the executable when it cannot start.
pid_t spawn_process(const ProcessSpec& spec);

// The environment variable through which a parent asks its child to end with it: spawn_process
// sets it when ProcessSpec::end_with_parent is set, and a child calls end_with_parent() early.
inline constexpr const char* kParentPidVariable = "FEDENGINE_PARENT_PID";
// When kParentPidVariable names this process's parent: SIGKILL when the parent dies (even by
// SIGKILL), so a rank never outlives the node process that started it (an orderly stop goes
// through the parent, which SIGTERMs its children first). Exits at once if the parent is already
// gone.
void end_with_parent();

// From now on SIGINT and SIGTERM set the returned flag (cleared here), which long-running
// commands poll to stop cleanly. Another signal a second or more after the first ends the process
// at once (the default action), for a user who cannot wait; copies of one signal arriving together
// (to the process and to its group, as `timeout` sends them) count once.
const std::atomic<bool>* stop_on_signals();

// The last `lines` lines of a file, indented: what a failed child printed last.
std::string tail_of(const std::string& file, size_t lines);

// A set of running children. Thread-safe: a watcher thread may reap while another stops them.
class Children {
 public:
  struct Exit {
    std::string name;
    std::string log;      // its output file, or empty
    bool failed = false;  // exit status other than 0, or killed by a signal
    std::string how;      // "exit status 1", "killed by signal 9"
  };

  ~Children();
  void add(pid_t pid, std::string name, std::string log = "");
  // Reaps the children that have exited and returns them.
  std::vector<Exit> reap();
  bool empty() const;
  bool running(const std::string& name) const;
  // Waits up to `grace` for every child to exit by itself (reaping them); signals nothing.
  void wait(std::chrono::milliseconds grace);
  // Waits up to `grace` for the children to exit by themselves, then SIGTERMs their groups,
  // waits up to 5 s more, and SIGKILLs what is left.
  void stop_all(std::chrono::milliseconds grace);
  // SIGTERM to every child's group now (they are still reaped by reap() or stop_all()).
  void terminate_all();

 private:
  struct Child {
    std::string name;
    std::string log;
  };
  mutable std::mutex mutex_;
  std::map<pid_t, Child> running_;
};

}  // namespace fe::fed
