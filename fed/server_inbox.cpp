#include "fed/server_inbox.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "fed/update_bounds.h"

namespace fe::fed {
namespace {

// A participant's reported volume must be usable by the partition rules.
std::optional<std::string> bad_volume(const Message& m) {
  const auto size = m.metrics.find("num_examples");
  if (size == m.metrics.end() || !std::isfinite(size->second) || size->second < 1 || size->second > 1e15)
    return "num_examples must be a positive count";
  const auto memory = m.metrics.find("free_memory_bytes");
  if (memory != m.metrics.end() && !(std::isfinite(memory->second) && memory->second >= 0))
    return "free_memory_bytes must be a non-negative number";
  return std::nullopt;
}

// The largest message a participant sends is a result: the adapter's tensors (check_tensors holds
// them to these specs) and a few hundred bytes of names, shapes and metrics. Twice the adapter
// plus 1 MiB leaves room for both; anything larger is not from a participant.
int64_t max_message_bytes(const std::vector<TensorSpec>& specs) {
  int64_t adapter = 0;
  for (const TensorSpec& spec : specs) adapter += spec.shape.numel() * static_cast<int64_t>(dtype_size(spec.dtype));
  return 2 * adapter + (int64_t{1} << 20);
}

ParticipantVolume volume_in(const Message& m) {
  ParticipantVolume volume{.examples = static_cast<int64_t>(m.metrics.at("num_examples"))};
  if (auto memory = m.metrics.find("free_memory_bytes"); memory != m.metrics.end())
    volume.free_memory_bytes = memory->second;
  return volume;
}

}  // namespace

ServerInbox::ServerInbox(const FederationConfig& config, Roster& roster, std::vector<TensorSpec> specs,
                         bool needs_clipped_bit, RoundRecord& record, Say say)
    : config_(config),
      roster_(roster),
      specs_(std::move(specs)),
      needs_clipped_bit_(needs_clipped_bit),
      record_(record),
      say_(std::move(say)) {
  ServerSecurity security;
  if (!config.server.server_key.empty()) {
    security.server_keys = load_keys(config.server.server_key);
    for (const ParticipantConfig& p : config.participants) {
      public_keys_[p.name] = load_keys(p.public_key).public_key;
      security.allowed_client_keys.push_back(public_keys_[p.name]);
    }
  }
  const int64_t limit = max_message_bytes(specs_);
  socket_ = std::make_unique<ServerSocket>(config.server.address, security, say_, limit);
  say_("messages over " + std::to_string(limit) + " bytes (twice the adapter, plus 1 MiB) are refused");
}

std::string ServerInbox::endpoint() const { return socket_->endpoint(); }

void ServerInbox::send(const std::string& peer, const Message& m) {
  const std::string bytes = encode(m);
  record_.bytes_sent += static_cast<int64_t>(bytes.size());
  socket_->send(peer, bytes);
}

bool ServerInbox::handle_next(std::chrono::milliseconds wait) {
  std::optional<Envelope> envelope = socket_->receive(wait);
  if (envelope) handle(*envelope);
  return envelope.has_value();
}

void ServerInbox::open_round(std::function<void(const std::string&)> resend_fit) {
  if (results_round_ != record_.round) results_.clear();
  std::erase_if(results_, [&](const auto& result) { return !is_sampled(result.first); });
  results_round_ = record_.round;
  refused_results_.clear();  // a participant refused in an earlier attempt may answer this one
  resend_fit_ = std::move(resend_fit);
  round_open_ = true;
}

std::map<std::string, ClientResult> ServerInbox::close_round() {
  round_open_ = false;
  results_round_ = -1;
  resend_fit_ = nullptr;
  return std::exchange(results_, {});
}

void ServerInbox::refuse(const std::string& peer, const std::string& who, const std::string& reason, int64_t round) {
  say_("refused a message from " + who + ": " + reason);
  Message reject{.type = MessageType::reject, .round = round, .client_id = who};
  reject.config["reason"] = reason;
  send(peer, reject);
}

bool ServerInbox::is_participant(const std::string& name) const {
  return std::any_of(config_.participants.begin(), config_.participants.end(),
                     [&](const ParticipantConfig& p) { return p.name == name; });
}

bool ServerInbox::is_sampled(const std::string& name) const {
  return std::find(record_.sampled.begin(), record_.sampled.end(), name) != record_.sampled.end();
}

// A join or heartbeat. The volume is taken at join time only (or from the first heartbeat when no
// join came),
// so partition shares do not drift with free memory.
void ServerInbox::admit(const Message& m, const std::string& peer) {
  if (auto reason = bad_volume(m)) return refuse(peer, m.client_id, *reason);
  const bool known = roster_.joined(m.client_id), returning = known && !roster_.alive(m.client_id);
  const bool takes_volume = m.type == MessageType::join || !known;
  roster_.heard_from(m.client_id, peer, m.metrics, takes_volume ? std::optional(volume_in(m)) : std::nullopt);
  if (!known || returning)
    say_("participant " + m.client_id + (absent_.erase(m.client_id) > 0 ? " rejoined" : " joined") + " (" +
         std::to_string(roster_.volume_of(m.client_id).examples) + " examples)");
  if (m.type == MessageType::join) {
    Message welcome{.type = MessageType::welcome, .round = record_.round, .client_id = m.client_id};
    welcome.config["heartbeat"] = config_.server.heartbeat_s;
    send(peer, welcome);
    // A sampled participant that restarted mid-round lost its fit: send it again.
    if (round_open_ && is_sampled(m.client_id) && !has_result(m.client_id)) resend_fit_(m.client_id);
  }
}

// One live connection per participant name: the first connection that joined under a name keeps
// it while its connection is open and the participant is alive (the roster's gone rule), so a
// second `client --name X` cannot take X's fits. Once the first connection closed (its process
// ended) or went silent, the next one to speak takes the name. Plain TCP identifies nothing
// more than the connection: whoever claims a free name first holds it (CurveZMQ binds names to
// keys as well).
std::optional<std::string> ServerInbox::claimed_elsewhere(const std::string& name, const std::string& peer) {
  const std::string holder = roster_.peer_of(name);
  if (holder.empty() || holder == peer || !roster_.alive(name) || !socket_->reachable(holder)) return std::nullopt;
  return "participant " + name +
         " is connected already; a second connection under its name is refused while the first is alive (stop "
         "the other process, or let it go silent for 3 heartbeats)";
}

// A refused second connection keeps trying (it may be the participant itself reconnecting before
// its old connection was seen to close): logged once per connection, answered every time with a
// reject that says it is final for a client that has not joined yet.
void ServerInbox::refuse_connection(const std::string& peer, const Message& m, const std::string& reason) {
  if (refused_peers_.insert(peer).second) say_("refused a message from " + m.client_id + ": " + reason);
  Message reject{.type = MessageType::reject, .client_id = m.client_id};
  reject.config["reason"] = reason;
  reject.config["final"] = true;
  send(peer, reject);
}

void ServerInbox::note_absent() {
  for (const ParticipantStatus& status : roster_.snapshot())
    if (status.state == "gone" && roster_.joined(status.name) && absent_.insert(status.name).second)
      say_("participant " + status.name + " is gone: " + status.note);
}

void ServerInbox::participant_gone(const std::string& name, const std::string& report) {
  say_("participant " + report);
  roster_.mark_gone(name, report.substr(0, report.find(';')));  // no result will come
  absent_.insert(name);
}

// A result the open round expects, refused: its sender is done with the round.
void ServerInbox::refuse_result(const std::string& peer, const Message& m, const std::string& reason) {
  refused_results_.insert(m.client_id);
  refuse(peer, m.client_id, "result for round " + std::to_string(m.round) + " refused: " + reason, m.round);
}

void ServerInbox::accept_result(Message& m, const std::string& peer) {
  const std::string round = std::to_string(m.round), open = std::to_string(record_.round);
  if (!round_open_ || m.round < record_.round)
    return refuse(peer, m.client_id, "result for round " + round + " after the round closed (discarded)");
  if (m.round != record_.round)
    return refuse(peer, m.client_id, "result for round " + round + " while round " + open + " is open");
  if (!is_sampled(m.client_id)) return refuse(peer, m.client_id, "not sampled for round " + open);
  if (has_result(m.client_id)) return refuse(peer, m.client_id, "duplicate result for round " + round);
  if (m.num_examples <= 0) return refuse_result(peer, m, "num_examples must be positive");
  if (const int64_t most = max_result_examples(config_, roster_, m.client_id); m.num_examples > most)
    return refuse_result(peer, m,
                         "num_examples = " + std::to_string(m.num_examples) + " exceeds the participant's share of " +
                             std::to_string(most) + " examples per round");
  const auto bit = m.metrics.find("clipped_bit");
  if (needs_clipped_bit_ && (bit == m.metrics.end() || (bit->second != 0.0 && bit->second != 1.0)))
    return refuse_result(peer, m, "client-side adaptive clipping needs a clipped_bit of 0 or 1");
  try {
    check_tensors(m, specs_);
  } catch (const ProtocolError& e) {
    return refuse_result(peer, m, e.what());
  }
  refused_results_.erase(m.client_id);
  ClientResult& result = results_[m.client_id] = {m.client_id, {}, m.num_examples};
  for (NamedTensor& t : m.tensors) result.params.emplace_back(t.name, t.tensor);
  if (bit != m.metrics.end()) result.metrics["clipped_bit"] = bit->second;
  record_.examples[m.client_id] = m.num_examples;
  if (auto loss = m.metrics.find("train_loss"); loss != m.metrics.end()) record_.train_loss[m.client_id] = loss->second;
  if (auto epsilon = m.metrics.find("dp_sgd_epsilon");
      epsilon != m.metrics.end() && std::isfinite(epsilon->second) && epsilon->second >= 0)
    record_.dp_sgd_epsilon[m.client_id] = epsilon->second;
}

std::optional<std::string> ServerInbox::impostor(const std::string& name, const Envelope& envelope) const {
  if (!is_participant(name)) return "no participant of this name is configured";
  // With CurveZMQ a participant may only speak for itself: its name must match its key.
  if (!public_keys_.empty() && public_keys_.at(name) != envelope.public_key)
    return "sent with the key " + envelope.public_key + ", which belongs to another participant";
  return std::nullopt;
}

// A participant whose header decoded hears why the rest did not; a result of the open round ends
// its part in the round. Anything else is only logged: there is no one to answer.
void ServerInbox::refuse_undecodable(const Envelope& envelope, const ProtocolError& error) {
  const std::string bytes = std::to_string(envelope.payload.size()) + " bytes";
  if (!error.header || impostor(error.header->client_id, envelope)) {
    say_("refused an undecodable message (" + bytes + "): " + error.what());
    return;
  }
  const MessageHeader& header = *error.header;
  const bool open_result = header.type == MessageType::fit_result && round_open_ && header.round == record_.round &&
                           is_sampled(header.client_id) && !has_result(header.client_id);
  if (open_result) refused_results_.insert(header.client_id);
  refuse(envelope.peer, header.client_id,
         std::string("undecodable ") + message_type_name(header.type) + " (" + bytes + "): " + error.what(),
         header.round);
}

void ServerInbox::handle(const Envelope& envelope) {
  record_.bytes_received += static_cast<int64_t>(envelope.payload.size());
  Message m;
  try {
    m = decode(envelope.payload);
  } catch (const ProtocolError& e) {
    return refuse_undecodable(envelope, e);
  }
  if (auto reason = impostor(m.client_id, envelope)) return refuse(envelope.peer, m.client_id, *reason);
  if (auto reason = claimed_elsewhere(m.client_id, envelope.peer)) return refuse_connection(envelope.peer, m, *reason);
  switch (m.type) {
    case MessageType::join:
    case MessageType::heartbeat:
      return admit(m, envelope.peer);
    case MessageType::fit_result:
      roster_.heard_from(m.client_id, envelope.peer, m.metrics);
      return accept_result(m, envelope.peer);
    case MessageType::shutdown:
      if (roster_.joined(m.client_id)) {
        say_("participant " + m.client_id + " left");
        absent_.insert(m.client_id);
      }
      roster_.mark_left(m.client_id);
      return;
    default:
      return refuse(envelope.peer, m.client_id, std::string("unexpected message type ") + message_type_name(m.type));
  }
}

}  // namespace fe::fed
