// fed/launcher.h — `fedengine run`: the server in this process and every participant's nodes,
// from one YAML file.
//
// A node on this machine is a child process, `fedengine client CFG --name NAME --node K --server
// ENDPOINT` (this same binary; it starts the node's ranks), with its output in
// OUTPUT/participants/NAME/client.log (node 0) or nodeK.log. For nodes on other hosts, `run`
// writes the plan scripts (fed/plan.h) to OUTPUT/plan/ and, with `launch: ssh`, pipes each to
// `bash -s` on its host over ssh (output in the same log files); with `launch: manual` it prints
// which script to start where. A node that ends is reported to the server at once (gone, with the
// end of its log when it failed). Ctrl-C (SIGINT) or SIGTERM stops the server cleanly, which tells
// the participants to shut down; local nodes still running after that are terminated, and remote
// ones are sent SIGTERM through their pid files.
#pragma once

#include <iosfwd>
#include <string>

#include "fed/federation_config.h"

namespace fe::fed {

// Returns the process exit status: 0 when every round completed.
int launch_federation(const std::string& config_path, const std::string& self_executable, bool resume,
                      std::ostream& log);

}  // namespace fe::fed
