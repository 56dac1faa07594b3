// fed/client.h — one participant: joins the server, trains each round it is sampled for, returns
// its adapter, sends heartbeats while it works, and leaves when the server says so.
//
// The data a participant trains on in round r is a function of r — train.steps batches placed at
// (r − 1) · steps · grad_accum_steps batches into its seeded epoch order, or, when the server
// assigns a share of its data (a partition strategy), one pass over round r's slice — so a round
// trained twice, after a server restart, sees the same data. With client-side DP the participant
// clips its own update to the clip norm the server sends and reports whether it had to.
//
// A participant may run several ranks (its `nodes`): each rank is a process that trains on its
// share of every global batch (train.micro_batch_size rows per rank per micro-batch), and the
// ranks sum their gradients (engine/communicator.h). Only rank 0 speaks with the server; it passes
// each round's message on to the other ranks, which train with it and discard their copy of the
// result (identical to rank 0's).
#pragma once

#include <atomic>
#include <iosfwd>
#include <string>

#include "engine/communicator.h"
#include "fed/federation_config.h"

namespace fe::fed {

// One rank of a participant. Returns when the server sends shutdown (0) or *stop is set (1).
// endpoint overrides server.address (used by `fedengine run` when the server picked a free port).
// `rank` must agree with the participant's nodes (its world size).
int run_client(const FederationConfig& config, const std::string& name, const std::string& endpoint, std::ostream& log,
               const std::atomic<bool>* stop = nullptr, const RankInfo& rank = {});

// The ranks of one node of a participant: this process when the participant has a single rank;
// otherwise one `self_executable client` child per local rank, with the rank environment
// (node_environment() plus RANK and LOCAL_RANK). When one rank fails the node's other ranks are
// stopped (the survivors would wait in a collective). Returns 0 when every rank finished cleanly.
int run_participant_node(const FederationConfig& config, const std::string& name, size_t node,
                         const std::string& endpoint, const std::string& self_executable, std::ostream& log,
                         const std::atomic<bool>* stop = nullptr);

}  // namespace fe::fed
