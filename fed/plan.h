// fed/plan.h — `fedengine plan cfg.yaml --out DIR`: the scripts that start each role of a
// federation, one per machine: DIR/server.sh, and per participant DIR/<name>.sh (one node) or
// DIR/<name>-node<k>.sh (several). `fedengine run` pipes the participants' scripts to their hosts
// over ssh (`launch: ssh`), or tells you which to start where (`launch: manual`).
//
// A participant's script carries the config itself: it writes it beside the YAML's absolute path
// on its machine under a name of its own (embedded_config_path(): FILE.plan-SCRIPT.yaml, so
// relative paths in it mean the same everywhere, and a YAML the machine already holds at that
// path is never replaced), checks that the files the node
// needs are there (the base model, its data, its key on the node that talks to the server),
// exports the node's rank environment (WORLD_SIZE, MASTER_ADDR, CUDA_VISIBLE_DEVICES, NCCL_*),
// records its PID in pid_file() so `run` can stop it, and execs `fedengine client --node k`,
// which starts the node's ranks. Nothing else needs copying: the server sends every round's
// global adapter and settings.
#pragma once

#include <string>
#include <vector>

#include "fed/federation_config.h"

namespace fe::fed {

struct PlannedScript {
  std::string file_name;  // "server.sh", "clinic-a.sh"
  std::string content;
};

// `fedengine` is the command the scripts run (a path or a name on PATH).
std::vector<PlannedScript> plan_federation(const FederationConfig& config, const std::string& fedengine);
// Where a participant node's script records its PID on its machine: a shell word (it expands
// $TMPDIR and the user id there), one per run and node.
std::string pid_file(const FederationConfig& config, const ParticipantConfig& participant, size_t node);
// The shell command that stops that node on its machine (through the pid file).
std::string stop_node_command(const FederationConfig& config, const ParticipantConfig& participant, size_t node);
// The script's file name: <name>.sh for a one-node participant, else <name>-node<k>.sh.
std::string node_script_name(const ParticipantConfig& participant, size_t node);

// Where a node's script writes the embedded config on its machine (an absolute path).
std::string embedded_config_path(const FederationConfig& config, const ParticipantConfig& participant, size_t node);

// What the scripts cannot do as configured, one line each: a server port of 0 (the server picks a
// free port when it starts, which scripts written now cannot know).
std::vector<std::string> plan_warnings(const FederationConfig& config);

// Writes the scripts (mode 0755) into dir.
void write_plan(const std::vector<PlannedScript>& scripts, const std::string& dir);

}  // namespace fe::fed
