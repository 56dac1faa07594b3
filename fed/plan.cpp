#include "fed/plan.h"

#include <filesystem>
#include <fstream>

#include "kernels/view.h"

namespace fe::fed {
namespace {

namespace fs = std::filesystem;

// Single-quoted for the shell.
std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

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

PlannedScript participant_script(const FederationConfig& c, const ParticipantConfig& p, const std::string& fedengine) {
  std::string s = header("Participant " + p.name, c.path);
  s += require_file(c.path, "the federation config");
  s += require_file(p.train.model_dir, "the base model");
  s += require_file(p.train.train_file, "its training data");
  if (!p.key.empty()) {
    s += require_file(p.key, "its CurveZMQ key");
    s += require_file(c.server.server_public_key, "the server's public key");
  }
  s += "# connects to " + c.server.address + " (pass --server ENDPOINT to override)\n";
  s += "exec " + quoted(fedengine) + " client " + quoted(absolute(c.path)) + " --name " + quoted(p.name) + " \"$@\"\n";
  return {p.name + ".sh", s};
}

}  // namespace

std::vector<PlannedScript> plan_federation(const FederationConfig& config, const std::string& fedengine) {
  std::vector<PlannedScript> scripts = {server_script(config, fedengine)};
  for (const ParticipantConfig& p : config.participants) scripts.push_back(participant_script(config, p, fedengine));
  return scripts;
}

void write_plan(const std::vector<PlannedScript>& scripts, const std::string& dir) {
  fs::create_directories(dir);
  for (const PlannedScript& script : scripts) {
    const fs::path path = fs::path(dir) / script.file_name;
    std::ofstream(path) << script.content;
    if (!fs::exists(path)) throw Error(path.string() + ": could not be written");
    fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
  }
}

}  // namespace fe::fed
