// fed/preflight.h — what would make a participant fail as it starts, checked where the config is
// read, so that the user hears of it at once instead of after server.join_timeout.
//
// `fedengine run` checks every participant with a node on this machine before it starts the
// server or any process; `fedengine client` checks its own participant. Errors name the config
// file, the participant, the file and the setting (its key, in the participant's entry or at the
// top level, whichever set it).
#pragma once

#include "fed/federation_config.h"

namespace fe::fed {

// Every participant trains the same adapter structure (the server aggregates tensor by tensor):
// Error naming the participant when its overrides change the adapter section.
void require_shared_adapter(const FederationConfig& config, const ParticipantConfig& participant);

// The participant's base model, training data, tokenizer and initial adapter exist, and its
// overrides keep the shared adapter structure.
void check_participant_files(const FederationConfig& config, const ParticipantConfig& participant);

// check_participant_files for every participant that has a node on this machine.
void check_local_participants(const FederationConfig& config);

}  // namespace fe::fed
