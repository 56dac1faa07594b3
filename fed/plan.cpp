#include "fed/plan.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "engine/durable_file.h"

namespace fe::fed {
namespace {

namespace fs = std::filesystem;

// Single-quoted for the shell.
std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The user's own directory for pid files on the node's machine (a shell word).
std::string pid_directory() { return "\"${TMPDIR:-/tmp}/fedengine-$(id -u)\""; }

// Scripts run from anywhere: every path in them is absolute.
std::string absolute(const std::string& path) { return fs::absolute(path).lexically_normal().string(); }

std::string header(const std::string& role, const std::string& config) {
  return "#!/usr/bin/env bash\n# " + role + " of the federation in " + config +
         " (written by `fedengine plan`).\nset -euo pipefail\n";
}

// A line that stops the script with a clear message when a file the role needs is missing.
std::string require_file(const std::string& path, const std::string& what) {
  return "[ -e " + quoted(absolute(path)) + " ] || { echo " + quoted("missing " + what + ": " + absolute(path)) +
         " >&2; exit 1; }\n";
}

PlannedScript server_script(const FederationConfig& c, const std::string& fedengine) {
  std::string s = header("The server", c.path);
  s += require_file(c.path, "the federation config");
  s += require_file(c.shared.model_dir, "the base model");
  if (!c.server.server_key.empty()) s += require_file(c.server.server_key, "the server's CurveZMQ key");
  s += "# listens on " + c.server.address + "; add --resume to continue after a crash\n";
  s += "exec " + quoted(fedengine) + " server " + quoted(absolute(c.path)) + " \"$@\"\n";
  return {"server.sh", s};
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read the federation config");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes the config at `copy` (beside the original), whole or not at all (several nodes may share
// a file system and write it at once).
std::string embedded_config(const FederationConfig& c, const std::string& copy) {
  static const std::string kEnd = "FEDENGINE_CONFIG_END";
  const std::string text = read_file(c.path);
  if (text.find(kEnd) != std::string::npos) throw Error(c.path + ": contains the line " + kEnd + ", which ends the embedded copy");
  const std::string path = quoted(copy);
  return "# The federation config, as `fedengine plan` read it:\nmkdir -p \"$(dirname " + path + ")\"\nconfig_copy=$(mktemp " +
         path + ".XXXXXX)\ncat > \"$config_copy\" <<'" + kEnd + "'\n" + text + (text.ends_with('\n') ? "" : "\n") + kEnd +
         "\nmv -f \"$config_copy\" " + path + "\n";
}

std::string describe_node(const ParticipantConfig& p, size_t node) {
  const NodeConfig& n = p.nodes[node];
  const int first = p.first_rank(node);
  std::string text = "node " + std::to_string(node) + " of " + std::to_string(p.nodes.size()) + " (" + n.host + "): rank" +
                     (n.ranks > 1 ? "s " + std::to_string(first) + ".." + std::to_string(first + n.ranks - 1)
                                  : " " + std::to_string(first)) +
                     " of " + std::to_string(p.world_size());
  return text + (n.gpus.empty() ? ", CPU (Gloo)" : ", one per GPU");
}

PlannedScript participant_script(const FederationConfig& c, const ParticipantConfig& p, size_t node,
                                 const std::string& fedengine) {
  std::string s = header("Participant " + p.name + ", " + describe_node(p, node) + ",", c.path);
  s += require_file(p.train.model_dir, "the base model");
  s += require_file(p.train.train_file, "its training data");
  if (!p.key.empty() && node == 0) {
    s += require_file(p.key, "its CurveZMQ key");
    s += require_file(c.server.server_public_key, "the server's public key");
  }
  const std::string config_copy = embedded_config_path(c, p, node);
  s += embedded_config(c, config_copy);
  for (const auto& [name, value] : node_environment(p, node)) s += "export " + name + "=" + quoted(value) + "\n";
  s += "mkdir -p -m 700 " + pid_directory() + "\necho $$ > " + pid_file(c, p, node) + "  # `fedengine run` stops the node through it\n";
  if (node == 0) s += "# rank 0 connects to " + c.server.address + " (pass --server ENDPOINT to override)\n";
  s += "exec " + quoted(fedengine) + " client " + quoted(config_copy) + " --name " + quoted(p.name) + " --node " +
       std::to_string(node) + " \"$@\"\n";
  return {node_script_name(p, node), s};
}

}  // namespace

std::vector<PlannedScript> plan_federation(const FederationConfig& config, const std::string& fedengine) {
  std::vector<PlannedScript> scripts = {server_script(config, fedengine)};
  for (const ParticipantConfig& p : config.participants)
    for (size_t node = 0; node < p.nodes.size(); ++node) scripts.push_back(participant_script(config, p, node, fedengine));
  return scripts;
}

std::string embedded_config_path(const FederationConfig& c, const ParticipantConfig& p, size_t node) {
  const fs::path original = absolute(c.path);
  const std::string script = node_script_name(p, node);
  return (original.parent_path() /
          (original.stem().string() + ".plan-" + script.substr(0, script.size() - 3) + original.extension().string()))
      .string();
}

std::vector<std::string> plan_warnings(const FederationConfig& c) {
  std::vector<std::string> warnings;
  const std::string& address = c.server.address;
  if (address.size() > 2 && address.ends_with(":0"))
    warnings.push_back("server.address " + address +
                       " has port 0: the server will pick a free port when it starts, which these scripts cannot "
                       "know; set a fixed port, or pass --server ENDPOINT to each participant's script");
  return warnings;
}

std::string pid_file(const FederationConfig& c, const ParticipantConfig& p, size_t node) {
  // One file per run (config path and output directory) and node, in the user's own directory.
  const uint64_t run = std::hash<std::string>{}(absolute(c.path) + "\n" + absolute(c.shared.output_dir));
  char run_id[17];
  std::snprintf(run_id, sizeof run_id, "%016llx", static_cast<unsigned long long>(run));
  return "\"${TMPDIR:-/tmp}/fedengine-$(id -u)/" + p.name + "-node" + std::to_string(node) + "-" + run_id + ".pid\"";
}

std::string stop_node_command(const FederationConfig& c, const ParticipantConfig& p, size_t node) {
  // The PID may belong to another process by now: only a fedengine client of this very node is
  // signalled.
  const std::string file = pid_file(c, p, node);
  return "pid=$(cat " + file + " 2>/dev/null) && tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -qF -- " +
         quoted(" --name " + p.name + " --node " + std::to_string(node)) + " && kill -TERM $pid; rm -f " + file + "; true";
}

std::string node_script_name(const ParticipantConfig& p, size_t node) {
  return p.nodes.size() == 1 ? p.name + ".sh" : p.name + "-node" + std::to_string(node) + ".sh";
}

void write_plan(const std::vector<PlannedScript>& scripts, const std::string& dir) {
  fs::create_directories(dir);
  for (const PlannedScript& script : scripts) {
    const fs::path path = fs::path(dir) / script.file_name;
    write_file_whole(path.string(), script.content, 0755);  // rwxr-xr-x: a script to run by hand
  }
}

}  // namespace fe::fed
