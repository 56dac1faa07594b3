// fed/server_inbox.h — the server's side of the wire: every message from a participant is decoded,
// checked, and either refused (logged with the reason; the sender gets a reject) or taken in:
// joins and heartbeats into the roster, results of the open round into that round.
//
// Bad input never stops the server: a message that does not decode, comes from an unknown
// participant (or, with CurveZMQ, with another participant's key), comes from a second
// connection under the name of a participant whose first one is alive, belongs to another round,
// repeats a result, carries tensors of the wrong shape or NaN/Inf values, or claims more examples
// than the participant's share (fed/update_bounds.h) is refused. A message whose header decoded
// (the protocol's ProtocolError::header) gets its reject even when the rest did not; a refused
// result of the open round counts as the participant's answer, so the round does not wait for
// another (one that comes while the round is open is still taken).
//
// Traffic counts towards the round record the server passes in (its current round), as do each
// result's examples, train loss and DP-SGD ε.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fed/federation_config.h"
#include "fed/protocol.h"
#include "fed/roster.h"
#include "fed/round_report.h"
#include "fed/strategy.h"
#include "fed/transport.h"

namespace fe::fed {

class ServerInbox {
 public:
  using Say = std::function<void(const std::string&)>;
  // Binds server.address (with CurveZMQ when server.server_key is set: only the participants' keys
  // are admitted). `specs` are the tensors a result must carry; `needs_clipped_bit`: results must
  // report clipped_bit 0 or 1 (client-side adaptive DP). `record` must outlive the inbox.
  ServerInbox(const FederationConfig& config, Roster& roster, std::vector<TensorSpec> specs, bool needs_clipped_bit,
              RoundRecord& record, Say say);

  std::string endpoint() const;
  void send(const std::string& peer, const Message& m);
  // Handles the next message, waiting at most `wait` for one; false when none came.
  bool handle_next(std::chrono::milliseconds wait);

  // Results are taken from record.sampled for record.round while the round is open. A sampled
  // participant that joins again meanwhile (it restarted and lost its fit) gets `resend_fit`.
  // The round stays open between attempts: an attempt repeated for want of results keeps those
  // of participants sampled again (they trained the same round from the same global adapter on
  // the same data), and a result that arrives between attempts counts.
  void open_round(std::function<void(const std::string&)> resend_fit);
  const std::map<std::string, ClientResult>& results() const { return results_; }
  std::map<std::string, ClientResult> close_round();  // the results, by participant name
  bool has_result(const std::string& name) const { return results_.count(name) > 0; }
  // The participant answered the open round: its result was taken, or refused (a valid one may
  // still follow while the round is open, but the round need not wait for it).
  bool answered(const std::string& name) const { return has_result(name) || refused_results_.count(name) > 0; }
  size_t result_count() const { return results_.size(); }

  // Presence in the log: a participant that went silent (the roster's gone rule) is logged once
  // when note_absent() sees it; one whose process ended is logged by participant_gone(). A
  // participant heard from again after such a line is logged as "rejoined", otherwise as "joined".
  void note_absent();
  void participant_gone(const std::string& name, const std::string& report);

  // Logs the refusal and sends `peer` a reject (for `round`, when it is about a round's result).
  void refuse(const std::string& peer, const std::string& who, const std::string& reason, int64_t round = -1);

 private:
  void handle(const Envelope& envelope);
  void refuse_undecodable(const Envelope& envelope, const ProtocolError& error);
  void refuse_result(const std::string& peer, const Message& m, const std::string& reason);
  // Why a message naming `name` cannot be from that participant; nullopt when it can.
  std::optional<std::string> impostor(const std::string& name, const Envelope& envelope) const;
  std::optional<std::string> claimed_elsewhere(const std::string& name, const std::string& peer);
  void refuse_connection(const std::string& peer, const Message& m, const std::string& reason);
  void admit(const Message& m, const std::string& peer);
  void accept_result(Message& m, const std::string& peer);
  bool is_participant(const std::string& name) const;
  bool is_sampled(const std::string& name) const;

  const FederationConfig& config_;
  Roster& roster_;
  const std::vector<TensorSpec> specs_;
  const bool needs_clipped_bit_;
  RoundRecord& record_;
  Say say_;
  std::map<std::string, std::string> public_keys_;  // with CurveZMQ: each participant's own key
  std::unique_ptr<ServerSocket> socket_;
  bool round_open_ = false;
  int64_t results_round_ = -1;  // the round results_ belong to
  std::function<void(const std::string&)> resend_fit_;
  std::map<std::string, ClientResult> results_;
  std::set<std::string> absent_;         // logged as gone or left since they were last heard from
  std::set<std::string> refused_peers_;  // second connections under a name, logged once each
  std::set<std::string> refused_results_;  // sampled participants whose result was refused
};

}  // namespace fe::fed
