// fed/client.h — one participant: joins the server, trains each round it is sampled for, returns
// its adapter, sends heartbeats while it works, and leaves when the server says so.
//
// The data a participant trains on in round r is a function of r — train.steps batches placed at
// (r − 1) · steps · grad_accum_steps batches into its seeded epoch order, or, when the server
// assigns a share of its data (a partition strategy), one pass over round r's slice — so a round
// trained twice, after a server restart, sees the same data. With client-side DP the participant
// clips its own update to the clip norm the server sends and reports whether it had to.
#pragma once

#include <atomic>
#include <iosfwd>
#include <string>

#include "fed/federation_config.h"

namespace fe::fed {

// Returns when the server sends shutdown (0) or *stop is set (1). endpoint overrides
// server.address (used by `fedengine run` when the server picked a free port).
int run_client(const FederationConfig& config, const std::string& name, const std::string& endpoint,
               std::ostream& log, const std::atomic<bool>* stop = nullptr);

}  // namespace fe::fed
