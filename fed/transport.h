// fed/transport.h — ZeroMQ sockets between the server (ROUTER) and participants (DEALER), with
// CurveZMQ encryption and an allow-list of participant keys.
//
// Security: with a server keypair, the server socket is a CURVE server and a ZAP handler (a thread
// inside ServerSocket) admits only clients whose public key is in the allow-list; a refused
// client is logged with its key and address. Without keys, traffic is plain TCP, which is allowed
// only on loopback endpoints (tcp://127.x.x.x, tcp://localhost, tcp://[::1]); anything else is an
// error. Keys are Z85 strings (40 characters); `fedengine keygen` writes a keypair as two files:
// NAME.key (secret, mode 0600: "public = ...\nsecret = ...") and NAME.pub ("public = ...").
//
// Threads: a socket is not thread-safe (neither are ZeroMQ's); use each one from one thread at a
// time. The server's ZAP thread never calls `log` itself: it queues its lines, and receive() and
// send() pass them on, so `log` only runs on the thread that uses the socket.
//
// Size: a server may cap the size of one incoming message (max_message_bytes): ZeroMQ reads each
// frame's declared size first and closes a connection that declares more, before it allocates
// anything, so a peer cannot make the server hold a frame of its choosing (8 GiB, say). The
// server logs each connection closed this way or by its peer (ZeroMQ does not tell the two apart).
//
// Liveness: reachable(peer) says whether a peer's connection is still open (a probe, an empty
// message, which ClientSocket skips): ZeroMQ drops a peer from the server's routing table as soon
// as its connection closes, e.g. when its process ends.
//
// Delivery: a client reconnects by itself (every 100 ms, backing off to 1 s) when the server goes
// away, and what it sends meanwhile waits in its queue, so a restarted server receives it; a
// message that was in flight when the connection broke is lost, which the protocol's heartbeats
// and round timeouts cover. The server never blocks on a peer: a message for a peer that is gone
// or whose queue is full is dropped and logged. A client refused by the ZAP handler is not retried
// by ZeroMQ; restart it once its key is allowed.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fe::fed {

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 chars
  std::string secret_key;  // Z85, 40 chars; empty for a public-key-only file
};

CurveKeyPair generate_keypair();
// Writes PREFIX.key and PREFIX.pub.
void save_keypair(const CurveKeyPair& keys, const std::string& prefix);
// Reads a .key file (both keys) or a .pub file (public only); errors name the file.
CurveKeyPair load_keys(const std::string& path);

bool is_loopback_endpoint(const std::string& endpoint);

struct ServerSecurity {
  std::optional<CurveKeyPair> server_keys;      // none: plain TCP (loopback only)
  std::vector<std::string> allowed_client_keys;  // Z85 public keys
};

struct Envelope {
  std::string peer;        // ZeroMQ routing id of the sender
  std::string payload;     // one message (see protocol.h)
  std::string public_key;  // with CurveZMQ: the sender's Z85 public key (its ZAP User-Id); else empty
};

class ServerSocket {
 public:
  // Binds `endpoint` (e.g. "tcp://127.0.0.1:5555", port 0 or "*" picks a free port).
  // max_message_bytes < 0: no limit short of memory.
  ServerSocket(const std::string& endpoint, const ServerSecurity& security,
               std::function<void(const std::string&)> log = {}, int64_t max_message_bytes = -1);
  ~ServerSocket();
  ServerSocket(const ServerSocket&) = delete;
  ServerSocket& operator=(const ServerSocket&) = delete;

  std::string endpoint() const;  // the bound endpoint, with the actual port
  // The next message, or nullopt after `timeout` (or sooner, when a signal interrupts the wait).
  std::optional<Envelope> receive(std::chrono::milliseconds timeout);
  // Never throws for a peer that is gone or not reading: the message is dropped and logged.
  void send(const std::string& peer, const std::string& payload);
  // Whether `peer`'s connection is open (see Liveness above).
  bool reachable(const std::string& peer);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ClientSocket {
 public:
  // server_public_key empty: plain TCP (loopback only).
  ClientSocket(const std::string& endpoint, const std::optional<CurveKeyPair>& client_keys,
               const std::string& server_public_key);
  ~ClientSocket();
  ClientSocket(const ClientSocket&) = delete;
  ClientSocket& operator=(const ClientSocket&) = delete;

  // Queues the message; throws Error if the queue stays full for 10 s (the server is not reading).
  void send(const std::string& payload);
  std::optional<std::string> receive(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fe::fed
