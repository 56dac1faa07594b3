// fed/launcher.h — `fedengine run`: the server in this process and one child process per
// participant, from one YAML file.
//
// Children run `fedengine client CFG --name NAME --server ENDPOINT` (this same binary) with their
// output in OUTPUT/participants/NAME/client.log. A participant that exits with an error is
// reported with the end of its log. Ctrl-C (SIGINT) or SIGTERM stops the server cleanly, which
// tells the participants to shut down; any child still running after that is terminated.
#pragma once

#include <iosfwd>
#include <string>

#include "fed/federation_config.h"

namespace fe::fed {

// Returns the process exit status: 0 when every round completed.
int launch_federation(const std::string& config_path, const std::string& self_executable, bool resume,
                      std::ostream& log);

}  // namespace fe::fed
