#include "engine/rendezvous.h"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

namespace fe {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Wire format (ZeroMQ multipart). A client sends [op, key...]:
//   ["set", key, value]  → ["ok"]
//   ["get", key]         → ["pending"] at once when the key is not set yet, then ["ok", value]
//   ["missing", keys...] → ["ok", the keys not set...]
// The server sees each request behind the client's routing id and answers through it.
constexpr const char* kOk = "ok";
constexpr const char* kPending = "pending";

// Ample for addresses and ids; bounds what a stray connection to the port can make rank 0 hold.
constexpr int64_t kMaxMessageBytes = 16 << 20;

constexpr const char* kClosedPhase = "rendezvous.closed";

// Waiting for ranks polls the store, 1 ms after the first look, backing off to this.
constexpr milliseconds kLongestPoll(50);

std::string seconds_text(milliseconds duration) {
  std::ostringstream text;
  text << static_cast<double>(duration.count()) / 1000.0 << " s";
  return text.str();
}

std::string quoted(const std::string& key) { return "'" + key + "'"; }

// Where rank `rank` marks that it reached `phase`; kept apart from callers' keys.
std::string phase_key(const std::string& phase, int rank) { return "fe.phase/" + phase + "/" + std::to_string(rank); }

bool is_ipv6_literal(const std::string& host) { return host.find(':') != std::string::npos; }

std::string bracketed(const std::string& host) { return is_ipv6_literal(host) ? "[" + host + "]" : host; }

// Rank 0 listens on the master address itself when it is loopback (nothing else can reach it
// anyway), otherwise on every interface, IPv6 and IPv4.
std::string bind_endpoint(const RankInfo& info) {
  const std::string port = std::to_string(info.master_port);
  if (!is_loopback_host(info.master_addr)) return "tcp://*:" + port;
  const std::string host = info.master_addr == "localhost" ? "127.0.0.1" : info.master_addr;
  return "tcp://" + bracketed(host) + ":" + port;
}

std::vector<std::string> strings_of(const std::vector<zmq::message_t>& frames, size_t first) {
  std::vector<std::string> out;
  for (size_t i = first; i < frames.size(); ++i) out.push_back(frames[i].to_string());
  return out;
}

// False when the socket's send timeout passed first.
bool send_frames(zmq::socket_t& socket, const std::vector<std::string>& frames) {
  std::vector<zmq::const_buffer> buffers;
  for (const std::string& frame : frames) buffers.push_back(zmq::buffer(frame));
  return zmq::send_multipart(socket, buffers).has_value();
}

std::vector<std::string> missing_request(const std::vector<std::string>& keys) {
  std::vector<std::string> request{"missing"};
  request.insert(request.end(), keys.begin(), keys.end());
  return request;
}

std::string quoted_list(const std::vector<std::string>& keys) {
  std::string text;
  for (const std::string& key : keys) text += (text.empty() ? "" : ", ") + quoted(key);
  return text;
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr ipv4;
  if (inet_pton(AF_INET, host.c_str(), &ipv4) == 1) return (ntohl(ipv4.s_addr) >> 24) == 127;
  in6_addr ipv6;
  return inet_pton(AF_INET6, host.c_str(), &ipv6) == 1 && IN6_IS_ADDR_LOOPBACK(&ipv6);
}

// --- server (rank 0) -------------------------------------------------------------------------

class RendezvousStore::Server {
 public:
  explicit Server(const RankInfo& info) : socket_(context_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::maxmsgsize, kMaxMessageBytes);
    socket_.set(zmq::sockopt::ipv6, true);  // dual-stack wildcard; IPv4-only hosts fall back
    const std::string endpoint = bind_endpoint(info);
    try {
      socket_.bind(endpoint);
    } catch (const zmq::error_t& e) {
      throw Error("rendezvous store: rank 0 cannot listen on port " + std::to_string(info.master_port) + " (" +
                  endpoint + "): " + e.what() + "; another job may be using MASTER_PORT=" +
                  std::to_string(info.master_port));
    }
    thread_ = std::thread([this] { serve(); });
  }

  // Shutting the context down wakes the serving thread's blocking receive with ETERM.
  ~Server() {
    context_.shutdown();
    thread_.join();
  }

 private:
  void serve() {
    for (;;) {
      std::vector<zmq::message_t> frames;
      try {
        if (!zmq::recv_multipart(socket_, std::back_inserter(frames))) continue;
        handle(frames);
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM) break;  // the destructor's shutdown; any other error concerns one request
      }
    }
    socket_.close();
  }

  // frames = [routing id, op, arguments...]; malformed requests (a stray connection) are ignored.
  void handle(const std::vector<zmq::message_t>& frames) {
    if (frames.size() < 2) return;
    const std::string peer = frames[0].to_string();
    const std::string op = frames[1].to_string();
    std::vector<std::string> args = strings_of(frames, 2);
    if (op == "set" && args.size() == 2) {
      set(args[0], std::move(args[1]));
      send_frames(socket_, {peer, kOk});
    } else if (op == "get" && args.size() == 1) {
      get(peer, args[0]);
    } else if (op == "missing") {
      std::vector<std::string> reply{peer, kOk};
      for (std::string& key : args)
        if (!values_.contains(key)) reply.push_back(std::move(key));
      send_frames(socket_, reply);
    }
  }

  void set(const std::string& key, std::string value) {
    auto [first, last] = waiters_.equal_range(key);
    for (auto it = first; it != last; ++it) send_frames(socket_, {it->second, kOk, value});
    waiters_.erase(first, last);
    values_[key] = std::move(value);
  }

  // Answers at once when the key is set; otherwise says "pending" (so the client knows rank 0 is
  // up) and answers when the key is set.
  void get(const std::string& peer, const std::string& key) {
    if (auto it = values_.find(key); it != values_.end()) {
      send_frames(socket_, {peer, kOk, it->second});
      return;
    }
    waiters_.emplace(key, peer);
    send_frames(socket_, {peer, kPending});
  }

  zmq::context_t context_;
  zmq::socket_t socket_;
  std::map<std::string, std::string> values_;
  std::multimap<std::string, std::string> waiters_;  // key → routing ids of clients in get()
  std::thread thread_;
};

// --- client (every rank) ---------------------------------------------------------------------

class RendezvousStore::Client {
 public:
  Client(const RankInfo& info, milliseconds timeout)
      : hosting_(info.is_root()),
        address_(bracketed(info.master_addr) + ":" + std::to_string(info.master_port)),
        endpoint_("tcp://" + address_),
        // An IPv4-only resolution of "localhost" matches the server's 127.0.0.1.
        ipv6_(is_ipv6_literal(info.master_addr) || !is_loopback_host(info.master_addr)),
        timeout_(timeout) {}

  // The final answer's frames after the status, or nullopt when none came before `deadline`.
  // Each request has its own socket: no reply can be mistaken for another's, and calls from
  // several threads need no lock. ZeroMQ queues the request until rank 0 accepts the connection.
  std::optional<std::vector<std::string>> request(const std::vector<std::string>& frames, Clock::time_point deadline) {
    zmq::socket_t socket(context_, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);  // closing never waits for an absent rank 0
    socket.set(zmq::sockopt::ipv6, ipv6_);
    socket.set(zmq::sockopt::sndtimeo, static_cast<int>(timeout_.count()));
    try {
      socket.connect(endpoint_);
    } catch (const zmq::error_t& e) {
      throw Error("rendezvous store: cannot connect to " + endpoint_ + ": " + e.what() + " (check MASTER_ADDR)");
    }
    if (!send_frames(socket, frames)) return std::nullopt;
    for (;;) {
      std::optional<std::vector<zmq::message_t>> reply = receive(socket, deadline);
      if (!reply) return std::nullopt;
      heard_from_server_ = true;
      if (reply->empty() || (*reply)[0].to_string() != kPending) return strings_of(*reply, 1);
    }
  }

  // `request` ("set 'key'") got no answer from rank 0 within `waited`. Rank 0 itself hosts the
  // store, so there the address must be wrong.
  [[noreturn]] void fail_unanswered(const std::string& request, milliseconds waited) const {
    const std::string why = hosting_ ? "this rank (rank 0) hosts the store but does not reach it there: is MASTER_ADDR "
                                       "an address of this machine?"
                                     : "rank 0, which hosts the store, may not be running (or MASTER_ADDR/MASTER_PORT "
                                       "point elsewhere)";
    throw Error("rendezvous store at " + address_ + ": no answer within " + seconds_text(waited) + " to " + request +
                "; " + why);
  }

  // A get() timed out: either rank 0 never answered, or it did and no rank set the key.
  [[noreturn]] void fail_get(const std::string& key, milliseconds waited) const {
    if (!heard_from_server_) fail_unanswered("get " + quoted(key), waited);
    throw Error("rendezvous store at " + address_ + ": key " + quoted(key) + " was not set within " +
                seconds_text(waited) + " (the rank that sets it may not be running)");
  }

  const std::string& address() const { return address_; }
  milliseconds timeout() const { return timeout_; }

 private:
  static std::optional<std::vector<zmq::message_t>> receive(zmq::socket_t& socket, Clock::time_point deadline) {
    for (;;) {
      const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
      if (left <= milliseconds(0)) return std::nullopt;
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      try {
        if (zmq::poll(&item, 1, left) == 0) continue;
        std::vector<zmq::message_t> frames;
        if (zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) return frames;
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw Error(std::string("rendezvous store: receive failed: ") + e.what());
      }
    }
  }

  zmq::context_t context_;
  const bool hosting_;
  const std::string address_;
  const std::string endpoint_;
  const bool ipv6_;
  const milliseconds timeout_;
  std::atomic<bool> heard_from_server_ = false;
};

// --- the store ---------------------------------------------------------------------------------

RendezvousStore::RendezvousStore(const RankInfo& info, milliseconds timeout)
    : rank_(info.rank),
      world_size_(info.world_size),
      server_(info.is_root() ? std::make_unique<Server>(info) : nullptr),
      client_(std::make_unique<Client>(info, timeout)) {}

RendezvousStore::~RendezvousStore() = default;

void RendezvousStore::set(const std::string& key, const std::string& value) {
  if (!client_->request({"set", key, value}, Clock::now() + timeout()))
    client_->fail_unanswered("set " + quoted(key), timeout());
}

std::string RendezvousStore::get(const std::string& key) {
  const std::optional<std::vector<std::string>> reply = client_->request({"get", key}, Clock::now() + timeout());
  if (!reply || reply->size() != 1) client_->fail_get(key, timeout());
  return reply->front();
}

bool RendezvousStore::wait(const std::vector<std::string>& keys, milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (const std::string& key : keys)
    if (!client_->request({"get", key}, deadline)) return false;
  return true;
}

void RendezvousStore::meet(const std::string& phase, milliseconds timeout) {
  arrive(phase);
  wait_for_ranks(phase, timeout);
}

void RendezvousStore::close(milliseconds timeout) {
  arrive(kClosedPhase);
  if (!server_) return;
  wait_for_ranks(kClosedPhase, timeout);
  server_.reset();
}

void RendezvousStore::arrive(const std::string& phase) { set(phase_key(phase, rank_), ""); }

// Polls rather than waits in get(): the ranks that are missing at the deadline are known from the
// last answer even when rank 0, giving up at the same moment, no longer answers.
void RendezvousStore::wait_for_ranks(const std::string& phase, milliseconds timeout) {
  std::vector<std::string> keys;
  for (int rank = 0; rank < world_size_; ++rank) keys.push_back(phase_key(phase, rank));
  const Clock::time_point deadline = Clock::now() + timeout;
  std::optional<std::vector<std::string>> absent;
  for (milliseconds pause(1);; pause = std::min(2 * pause, kLongestPoll)) {
    if (std::optional<std::vector<std::string>> reply = client_->request(missing_request(keys), deadline))
      absent = std::move(reply);
    if (absent && absent->empty()) return;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - Clock::now()));
  }
  if (!absent) client_->fail_unanswered("check keys " + quoted_list(keys), timeout);
  std::string ranks;
  for (const std::string& key : *absent) ranks += (ranks.empty() ? "" : ", ") + key.substr(key.rfind('/') + 1);
  const bool one = absent->size() == 1;
  throw Error("rendezvous at " + address() + ": " + (one ? "rank " : "ranks ") + ranks + " of " +
              std::to_string(world_size_) + " did not reach " + quoted(phase) + " within " + seconds_text(timeout) +
              "; " + (one ? "is it" : "are they") + " running, with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE?");
}

const std::string& RendezvousStore::address() const { return client_->address(); }

std::chrono::milliseconds RendezvousStore::timeout() const { return client_->timeout(); }

}  // namespace fe
