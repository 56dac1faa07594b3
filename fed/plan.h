// fed/plan.h — `fedengine plan cfg.yaml --out DIR`: the scripts that start each role of a
// federation by hand, one per machine: DIR/server.sh and DIR/<participant>.sh. Each script checks
// that the files it needs are where the config says, then execs `fedengine server|client` with
// the config; copy it, the config and the participant's files to that machine.
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
// Writes the scripts (mode 0755) into dir.
void write_plan(const std::vector<PlannedScript>& scripts, const std::string& dir);

}  // namespace fe::fed
