#include "fed/transport.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <string_view>
#include <thread>
#include <utility>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "core/error.h"
#include "engine/durable_file.h"

namespace fe::fed {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t kZ85KeyLength = 40;
constexpr size_t kBinaryKeyLength = 32;

// HWMs count messages, not bytes. A round is a handful of messages per peer plus heartbeats, so
// the limit only guards against an unbounded backlog; it must never drop ordinary traffic.
constexpr int kHighWaterMark = 10'000;
// On close, time to flush a last message (e.g. "training is over") to a live peer, short enough
// that a dead peer cannot hold up shutdown.
constexpr milliseconds kLingerOnClose{500};
// A client whose queue is full (the server is gone or not reading) fails this long after send().
constexpr milliseconds kClientSendTimeout{10'000};
// Reconnection: first retry after 100 ms, backing off to 1 s while the server stays down, so a
// restarted server is reached within about a second.
constexpr milliseconds kReconnectInterval{100};
constexpr milliseconds kMaxReconnectInterval{1000};

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";  // fixed by RFC 27
constexpr const char* kZapDomain = "fedengine";

constexpr const char* kHowToEnableCurve =
    "plain TCP (unencrypted, unauthenticated) is only allowed on loopback endpoints (tcp://127.0.0.1, "
    "tcp://localhost, tcp://[::1]); to use the network, enable CurveZMQ: create keypairs with "
    "`fedengine keygen` and set server.server_key, server.server_public_key and each participant's key";

// --- keys -------------------------------------------------------------------------------------

bool is_z85_key(const std::string& key) {
  std::array<uint8_t, kBinaryKeyLength> binary;
  return key.size() == kZ85KeyLength && zmq_z85_decode(binary.data(), key.c_str()) != nullptr;
}

std::string z85_encode_key(const std::string& binary_key) {
  std::array<char, kZ85KeyLength + 1> text;
  zmq_z85_encode(text.data(), reinterpret_cast<const uint8_t*>(binary_key.data()), kBinaryKeyLength);
  return text.data();
}

std::string public_key_of(const std::string& secret_key) {
  std::array<char, kZ85KeyLength + 1> public_key;
  if (zmq_curve_public(public_key.data(), secret_key.c_str()) != 0) return "";
  return public_key.data();
}

void require_curve_support() {
  if (!zmq_has("curve"))
    throw Error("CurveZMQ: this libzmq was built without CURVE support (install Debian's libzmq5)");
}

std::string trim(std::string_view text) {
  const size_t first = text.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return "";
  return std::string(text.substr(first, text.find_last_not_of(" \t\r") - first + 1));
}

// --- endpoints --------------------------------------------------------------------------------

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr ipv4;
  if (inet_pton(AF_INET, host.c_str(), &ipv4) == 1) return (ntohl(ipv4.s_addr) >> 24) == 127;
  in6_addr ipv6;
  if (inet_pton(AF_INET6, host.c_str(), &ipv6) != 1) return false;
  return IN6_IS_ADDR_LOOPBACK(&ipv6) || (IN6_IS_ADDR_V4MAPPED(&ipv6) && ipv6.s6_addr[12] == 127);
}

// The host of a tcp:// endpoint (without brackets), or nullopt for other transports and for the
// "source;destination" form.
std::optional<std::string> tcp_host(const std::string& endpoint) {
  if (!starts_with(endpoint, "tcp://")) return std::nullopt;
  const std::string address = endpoint.substr(6);
  if (address.find(';') != std::string::npos) return std::nullopt;
  if (!starts_with(address, "[")) return address.substr(0, address.rfind(':'));
  const size_t close = address.find(']');
  if (close == std::string::npos) return std::nullopt;
  return address.substr(1, close - 1);
}

bool is_ipv4_literal(const std::string& host) {
  in_addr ipv4;
  return inet_pton(AF_INET, host.c_str(), &ipv4) == 1;
}

void require_loopback(const std::string& who, const std::string& endpoint) {
  if (!is_loopback_endpoint(endpoint))
    throw Error(who + ": " + endpoint + " is not a loopback endpoint; " + kHowToEnableCurve);
}

// Routing ids are binary (ZeroMQ makes a 5-byte one per connection); logs show them in hex.
std::string printable_peer(const std::string& routing_id) {
  std::string hex = "0x";
  char byte[3];
  for (unsigned char c : routing_id) {
    std::snprintf(byte, sizeof byte, "%02x", c);
    hex += byte;
  }
  return hex;
}

// --- socket helpers ---------------------------------------------------------------------------

void set_common_options(zmq::socket_t& socket, const std::string& endpoint) {
  socket.set(zmq::sockopt::maxmsgsize, int64_t{-1});  // unlimited, as protocol.h promises: adapters can be gigabytes
  socket.set(zmq::sockopt::sndhwm, kHighWaterMark);
  socket.set(zmq::sockopt::rcvhwm, kHighWaterMark);
  socket.set(zmq::sockopt::linger, static_cast<int>(kLingerOnClose.count()));
  // Dual-stack for hostnames and wildcards; not for an IPv4 address, which would otherwise be
  // reported as tcp://[::ffff:127.0.0.1]:PORT.
  const std::optional<std::string> host = tcp_host(endpoint);
  socket.set(zmq::sockopt::ipv6, !(host && is_ipv4_literal(*host)));
}

// The frames of the next message, or nullopt once `timeout` has passed (or a signal interrupted
// the wait, so that the caller's loop can look at its stop flag).
std::optional<std::vector<zmq::message_t>> receive_frames(zmq::socket_t& socket, milliseconds timeout) {
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  std::vector<zmq::message_t> frames;
  try {
    if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
    if (!zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) return std::nullopt;
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return std::nullopt;
    throw Error(std::string("receive: ") + e.what());
  }
  return frames;
}

// The first message `accept` turns into a T, skipping the others, until `timeout` has passed.
template <class T, class Accept>
std::optional<T> receive_accepted(zmq::socket_t& socket, milliseconds timeout, Accept accept) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    const milliseconds left = std::max(milliseconds(0), std::chrono::ceil<milliseconds>(deadline - Clock::now()));
    const std::optional<std::vector<zmq::message_t>> frames = receive_frames(socket, left);
    if (!frames) return std::nullopt;
    if (std::optional<T> accepted = accept(*frames)) return accepted;
    if (left == milliseconds(0)) return std::nullopt;
  }
}

// --- ZAP (RFC 27) -----------------------------------------------------------------------------

// Log lines written by the ZAP thread and handed to the socket's owner, so that the log callback
// only ever runs on the owner's thread.
class PendingLog {
 public:
  void add(std::string line) {
    std::lock_guard lock(mutex_);
    lines_.push_back(std::move(line));
  }
  std::vector<std::string> take() {
    std::lock_guard lock(mutex_);
    return std::exchange(lines_, {});
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> lines_;
};

struct ZapRequest {
  std::string request_id, address, mechanism, client_key;  // client_key: Z85, CURVE only
};

std::optional<ZapRequest> parse_zap_request(const std::vector<zmq::message_t>& frames) {
  // version, request id, domain, address, routing id, mechanism, credentials...
  if (frames.size() < 6 || frames[0].to_string() != "1.0") return std::nullopt;
  ZapRequest request{.request_id = frames[1].to_string(), .address = frames[3].to_string(),
                     .mechanism = frames[5].to_string()};
  if (request.mechanism == "CURVE" && frames.size() == 7 && frames[6].size() == kBinaryKeyLength)
    request.client_key = z85_encode_key(frames[6].to_string());
  return request;
}

class ZapAuthenticator {
 public:
  ZapAuthenticator(std::set<std::string> allowed_keys, PendingLog& log)
      : allowed_keys_(std::move(allowed_keys)), log_(log) {}

  // The reply frames: version, request id, status code, status text, user id, metadata.
  std::array<std::string, 6> answer(const std::vector<zmq::message_t>& frames) {
    const std::optional<ZapRequest> request = parse_zap_request(frames);
    if (!request) return {"1.0", frames.size() > 1 ? frames[1].to_string() : "", "500", "malformed ZAP request", "", ""};
    if (allowed_keys_.contains(request->client_key))
      return {"1.0", request->request_id, "200", "OK", request->client_key, ""};
    report_refusal(*request);
    return {"1.0", request->request_id, "400", "client key not allowed", "", ""};
  }

 private:
  void report_refusal(const ZapRequest& request) {
    const std::string key = request.client_key.empty() ? "(none, mechanism " + request.mechanism + ")" : request.client_key;
    log_.add("refused a connection from " + request.address + ": public key " + key + " is not in the allow-list");
  }

  std::set<std::string> allowed_keys_;
  PendingLog& log_;
};

// Answers ZAP requests on its own thread for as long as it lives. It must be created before the
// server socket binds, so that no connection is ever accepted without a handler.
class ZapHandler {
 public:
  ZapHandler(zmq::context_t& context, std::set<std::string> allowed_keys, PendingLog& log) : context_(context) {
    zmq::socket_t socket(context, zmq::socket_type::rep);
    socket.set(zmq::sockopt::linger, 0);
    socket.bind(kZapEndpoint);
    // Bound here, then moved to the thread: thread creation is the memory barrier ZeroMQ asks for.
    thread_ = std::thread(serve, std::move(socket), ZapAuthenticator(std::move(allowed_keys), log), std::ref(log));
  }
  // Shutting the context down makes the handler's blocking receive fail with ETERM; the handler
  // lives exactly as long as its server socket, whose context this is.
  ~ZapHandler() {
    context_.shutdown();
    thread_.join();
  }
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

 private:
  static void serve(zmq::socket_t socket, ZapAuthenticator authenticator, PendingLog& log) {
    try {
      for (;;) {
        std::vector<zmq::message_t> request;
        if (!zmq::recv_multipart(socket, std::back_inserter(request))) continue;
        const std::array<std::string, 6> reply = authenticator.answer(request);
        std::array<zmq::const_buffer, 6> frames;
        for (size_t i = 0; i < reply.size(); ++i) frames[i] = zmq::buffer(reply[i]);
        zmq::send_multipart(socket, frames);
      }
    } catch (const zmq::error_t& e) {
      if (e.num() != ETERM) log.add(std::string("the ZAP handler stopped, no client can connect: ") + e.what());
    }
  }

  zmq::context_t& context_;
  std::thread thread_;
};

std::set<std::string> checked_allow_list(const std::vector<std::string>& keys) {
  std::set<std::string> allowed;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!is_z85_key(keys[i]))
      throw Error("ServerSocket: allowed client key #" + std::to_string(i + 1) + " is not a Z85 public key (" +
                  std::to_string(kZ85KeyLength) + " characters)");
    allowed.insert(keys[i]);
  }
  return allowed;
}

void require_full_keypair(const std::string& who, const CurveKeyPair& keys) {
  if (!is_z85_key(keys.public_key) || !is_z85_key(keys.secret_key))
    throw Error(who + ": the keypair needs a public and a secret Z85 key (" + std::to_string(kZ85KeyLength) +
                " characters each; load a .key file, not a .pub)");
}

}  // namespace

// --- keys -------------------------------------------------------------------------------------

CurveKeyPair generate_keypair() {
  require_curve_support();
  std::array<char, kZ85KeyLength + 1> public_key, secret_key;
  if (zmq_curve_keypair(public_key.data(), secret_key.data()) != 0)
    throw Error(std::string("generate_keypair: ") + zmq_strerror(zmq_errno()));
  return {.public_key = public_key.data(), .secret_key = secret_key.data()};
}

void save_keypair(const CurveKeyPair& keys, const std::string& prefix) {
  require_full_keypair("save_keypair(" + prefix + ")", keys);
  write_file_whole(prefix + ".key", "public = " + keys.public_key + "\nsecret = " + keys.secret_key + "\n", 0600);
  write_file_whole(prefix + ".pub", "public = " + keys.public_key + "\n", 0644);
}

CurveKeyPair load_keys(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw Error(path + ": cannot read the key file (" + std::strerror(errno) + ")");
  std::map<std::string, std::string> entries;
  std::string line;
  for (int number = 1; std::getline(file, line); ++number) {
    const std::string where = path + ":" + std::to_string(number) + ": ";
    const std::string text = trim(line);
    if (text.empty() || text[0] == '#') continue;
    const size_t equals = text.find('=');
    // Messages never quote a value: it may be a secret.
    if (equals == std::string::npos) throw Error(where + "expected 'public = KEY' or 'secret = KEY'");
    const std::string name = trim(std::string_view(text).substr(0, equals)), value = trim(text.substr(equals + 1));
    if (name != "public" && name != "secret") throw Error(where + "unknown entry '" + name + "' (expected public or secret)");
    if (entries.contains(name)) throw Error(where + "a second '" + name + "' entry");
    if (!is_z85_key(value))
      throw Error(where + "the " + name + " key is not a Z85 key (" + std::to_string(kZ85KeyLength) +
                  " characters of the Z85 alphabet; found " + std::to_string(value.size()) + " characters)");
    entries[name] = value;
  }
  if (!entries.contains("public")) throw Error(path + ": no 'public = KEY' line; is this a key file from fedengine keygen?");
  CurveKeyPair keys{.public_key = entries["public"], .secret_key = entries["secret"]};
  if (!keys.secret_key.empty() && public_key_of(keys.secret_key) != keys.public_key)
    throw Error(path + ": the public key does not belong to the secret key");
  return keys;
}

bool is_loopback_endpoint(const std::string& endpoint) {
  if (starts_with(endpoint, "ipc://") || starts_with(endpoint, "inproc://")) return true;  // never leave the host
  const std::optional<std::string> host = tcp_host(endpoint);
  return host && is_loopback_host(*host);
}

// --- ServerSocket -----------------------------------------------------------------------------

struct ServerSocket::Impl {
  // Destruction runs bottom-up: the monitor and the router close, then the ZAP handler shuts the
  // context down.
  zmq::context_t context;
  PendingLog pending_log;
  std::optional<ZapHandler> zap_handler;
  zmq::socket_t router{context, zmq::socket_type::router};
  std::optional<zmq::socket_t> disconnections;  // the router's monitor, with a message size limit
  std::string bound_endpoint;
  std::function<void(const std::string&)> log;
  int64_t max_message_bytes;

  Impl(const std::string& endpoint, const ServerSecurity& security, std::function<void(const std::string&)> log_to,
       int64_t max_message)
      : log(std::move(log_to)), max_message_bytes(max_message) {
    set_common_options(router, endpoint);
    router.set(zmq::sockopt::maxmsgsize, max_message_bytes < 0 ? int64_t{-1} : max_message_bytes);
    if (max_message_bytes >= 0) watch_disconnections();
    // A message for a peer that has gone raises EHOSTUNREACH instead of vanishing silently.
    router.set(zmq::sockopt::router_mandatory, true);
    if (security.server_keys)
      enable_curve(*security.server_keys, security.allowed_client_keys);
    else
      require_loopback("ServerSocket", endpoint);
    router.bind(endpoint);
    bound_endpoint = router.get(zmq::sockopt::last_endpoint);
  }

  void enable_curve(const CurveKeyPair& keys, const std::vector<std::string>& allowed_client_keys) {
    require_curve_support();
    require_full_keypair("ServerSocket", keys);
    zap_handler.emplace(context, checked_allow_list(allowed_client_keys), pending_log);
    router.set(zmq::sockopt::curve_server, true);
    router.set(zmq::sockopt::curve_secretkey, keys.secret_key);
    router.set(zmq::sockopt::zap_domain, kZapDomain);
  }

  void say(const std::string& line) {
    if (log) log(line);
  }

  // The router's monitor (RFC: zmq_socket_monitor) reports every closed connection; read by
  // the owner's thread in flush_pending_log.
  void watch_disconnections() {
    static std::atomic<int> sockets = 0;
    const std::string address = "inproc://fedengine.server-monitor." + std::to_string(sockets++);
    if (zmq_socket_monitor(router.handle(), address.c_str(), ZMQ_EVENT_DISCONNECTED) != 0)
      throw Error(std::string("ServerSocket: cannot monitor connections: ") + zmq_strerror(zmq_errno()));
    disconnections.emplace(context, zmq::socket_type::pair);
    disconnections->set(zmq::sockopt::linger, 0);
    disconnections->connect(address);
  }

  void report_disconnections() {
    if (!disconnections) return;
    std::vector<zmq::message_t> event;  // [event id and value, endpoint]
    while (zmq::recv_multipart(*disconnections, std::back_inserter(event), zmq::recv_flags::dontwait)) {
      say("a connection closed: its peer ended it, or sent a message over the limit of " +
          std::to_string(max_message_bytes) + " bytes, which the server refuses");
      event.clear();
    }
  }

  void flush_pending_log() {
    for (const std::string& line : pending_log.take()) say(line);
    report_disconnections();
  }

  bool reachable(const std::string& peer) {
    try {
      // The probe: an empty message. EAGAIN (a full queue) still means connected.
      router.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router.send(zmq::const_buffer(), zmq::send_flags::dontwait);
      return true;
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH) return false;
      throw Error("ServerSocket::reachable: " + std::string(e.what()));
    }
  }

  std::optional<Envelope> receive(milliseconds timeout) {
    std::optional<Envelope> envelope =
        receive_accepted<Envelope>(router, timeout, [this](const auto& frames) { return to_envelope(frames); });
    flush_pending_log();
    return envelope;
  }

  // A DEALER sends one frame per message, which the router delivers as [routing id, payload].
  std::optional<Envelope> to_envelope(const std::vector<zmq::message_t>& frames) {
    if (frames.size() == 2) {
      // The ZAP handler set User-Id to the key it admitted; plain TCP has no such property.
      const char* user_id = zmq_msg_gets(const_cast<zmq::message_t&>(frames[1]).handle(), "User-Id");
      return Envelope{.peer = frames[0].to_string(), .payload = frames[1].to_string(),
                      .public_key = user_id ? user_id : ""};
    }
    say("ignored a message of " + std::to_string(frames.size() - 1) + " frames from peer " +
        printable_peer(frames[0].to_string()) + " (expected one)");
    return std::nullopt;
  }

  void send(const std::string& peer, const std::string& payload) {
    flush_pending_log();
    try {
      // Never blocks: a peer that does not read must not stall the server.
      if (!router.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        say("dropped a message for peer " + printable_peer(peer) + ": its queue is full (" +
            std::to_string(kHighWaterMark) + " messages)");
        return;
      }
      router.send(zmq::buffer(payload), zmq::send_flags::none);
    } catch (const zmq::error_t& e) {
      if (e.num() != EHOSTUNREACH) throw Error("ServerSocket::send: " + std::string(e.what()));
      say("dropped a message for peer " + printable_peer(peer) + ": it is not connected (it left or its connection broke)");
    }
  }
};

ServerSocket::ServerSocket(const std::string& endpoint, const ServerSecurity& security,
                           std::function<void(const std::string&)> log, int64_t max_message_bytes) {
  try {
    impl_ = std::make_unique<Impl>(endpoint, security, std::move(log), max_message_bytes);
  } catch (const zmq::error_t& e) {
    throw Error("ServerSocket: cannot listen on " + endpoint + ": " + e.what());
  }
}

ServerSocket::~ServerSocket() = default;

std::string ServerSocket::endpoint() const { return impl_->bound_endpoint; }

std::optional<Envelope> ServerSocket::receive(milliseconds timeout) { return impl_->receive(timeout); }

void ServerSocket::send(const std::string& peer, const std::string& payload) { impl_->send(peer, payload); }

bool ServerSocket::reachable(const std::string& peer) { return impl_->reachable(peer); }

// --- ClientSocket -----------------------------------------------------------------------------

struct ClientSocket::Impl {
  zmq::context_t context;
  zmq::socket_t dealer{context, zmq::socket_type::dealer};
  std::string endpoint;

  Impl(const std::string& endpoint_to, const std::optional<CurveKeyPair>& client_keys,
       const std::string& server_public_key)
      : endpoint(endpoint_to) {
    set_common_options(dealer, endpoint);
    // ZMQ_IMMEDIATE stays off: messages sent while the server is down (or restarting) wait in the
    // queue and go out once ZeroMQ's automatic reconnect succeeds.
    dealer.set(zmq::sockopt::reconnect_ivl, static_cast<int>(kReconnectInterval.count()));
    dealer.set(zmq::sockopt::reconnect_ivl_max, static_cast<int>(kMaxReconnectInterval.count()));
    dealer.set(zmq::sockopt::sndtimeo, static_cast<int>(kClientSendTimeout.count()));
    if (!server_public_key.empty())
      enable_curve(client_keys, server_public_key);
    else if (client_keys)
      throw Error("ClientSocket: a client keypair without the server's public key; give both (CurveZMQ) or neither");
    else
      require_loopback("ClientSocket", endpoint);
    dealer.connect(endpoint);
  }

  void enable_curve(const std::optional<CurveKeyPair>& client_keys, const std::string& server_public_key) {
    require_curve_support();
    if (!client_keys) throw Error("ClientSocket: CurveZMQ needs the client's own keypair as well as the server's public key");
    require_full_keypair("ClientSocket", *client_keys);
    if (!is_z85_key(server_public_key))
      throw Error("ClientSocket: the server public key is not a Z85 key (" + std::to_string(kZ85KeyLength) + " characters)");
    dealer.set(zmq::sockopt::curve_serverkey, server_public_key);
    dealer.set(zmq::sockopt::curve_publickey, client_keys->public_key);
    dealer.set(zmq::sockopt::curve_secretkey, client_keys->secret_key);
  }

  void send(const std::string& payload) {
    if (!dealer.send(zmq::buffer(payload), zmq::send_flags::none))
      throw Error("ClientSocket::send: " + endpoint + " did not take a message within " +
                  std::to_string(kClientSendTimeout.count() / 1000) + " s (" + std::to_string(kHighWaterMark) +
                  " messages are queued: the server is down or not reading)");
  }

  std::optional<std::string> receive(milliseconds timeout) {
    // The server sends one frame per message; anything else is not from a ServerSocket. An empty
    // one is its liveness probe (ServerSocket::reachable).
    return receive_accepted<std::string>(dealer, timeout, [](const std::vector<zmq::message_t>& frames) {
      return frames.size() == 1 && frames.front().size() > 0 ? std::optional(frames.front().to_string()) : std::nullopt;
    });
  }
};

ClientSocket::ClientSocket(const std::string& endpoint, const std::optional<CurveKeyPair>& client_keys,
                           const std::string& server_public_key) {
  try {
    impl_ = std::make_unique<Impl>(endpoint, client_keys, server_public_key);
  } catch (const zmq::error_t& e) {
    throw Error("ClientSocket: cannot connect to " + endpoint + ": " + e.what());
  }
}

ClientSocket::~ClientSocket() = default;

void ClientSocket::send(const std::string& payload) {
  try {
    impl_->send(payload);
  } catch (const zmq::error_t& e) {
    throw Error("ClientSocket::send: " + std::string(e.what()));
  }
}

std::optional<std::string> ClientSocket::receive(milliseconds timeout) { return impl_->receive(timeout); }

}  // namespace fe::fed
