// tests/hostile_peer.h — a participant with a valid identity that answers the server's fits with
// attacks, speaking fed/transport and fed/protocol directly (no client code in between, so an
// attack can send anything the wire carries).
//
// An attack turns the round's fit into the payloads to send back; round r uses attacks[(r − 1) %
// attacks.size()]. Between fits the peer sends heartbeats, so the server keeps it alive and
// samples it. Attacks on a result's content come first below, then attacks on the connection that
// wrap one of them.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/rng.h"
#include "fed/protocol.h"
#include "fed/transport.h"
#include "tests/raw_zmtp.h"

namespace fe::test {

class HostilePeer {
 public:
  using Attack = std::function<std::vector<std::string>(const HostilePeer& self, const fed::Message& fit)>;

  HostilePeer(std::string endpoint, std::string name, std::vector<Attack> attacks, double heartbeat_s = 0.5)
      : endpoint_(std::move(endpoint)),
        name_(std::move(name)),
        attacks_(std::move(attacks)),
        heartbeat_s_(heartbeat_s) {
    thread_ = std::thread([this] { serve(); });
  }
  ~HostilePeer() {
    stop_ = true;
    thread_.join();
  }
  HostilePeer(const HostilePeer&) = delete;
  HostilePeer& operator=(const HostilePeer&) = delete;

  const std::string& name() const { return name_; }
  const std::string& endpoint() const { return endpoint_; }
  // The rejects the server sent, in order.
  std::vector<fed::Message> rejects() const {
    std::lock_guard lock(mutex_);
    return rejects_;
  }
  int fits_answered() const { return fits_; }
  bool told_to_stop() const { return shut_down_; }

  // The fit's adapter sent back as this peer's result for the fit's round.
  fed::Message honest_looking_result(const fed::Message& fit, int64_t examples = 1) const {
    fed::Message result{
        .type = fed::MessageType::fit_result, .round = fit.round, .client_id = name_, .num_examples = examples};
    for (const fed::NamedTensor& t : fit.tensors) result.tensors.push_back({t.name, t.tensor.clone()});
    return result;
  }

 private:
  void serve() {
    fed::ClientSocket socket(endpoint_, std::nullopt, "");
    fed::Message join{.type = fed::MessageType::join, .client_id = name_};
    join.metrics["num_examples"] = 100;
    socket.send(fed::encode(join));
    auto next_heartbeat = std::chrono::steady_clock::now();
    while (!stop_ && !shut_down_) {
      if (std::chrono::steady_clock::now() >= next_heartbeat) {
        fed::Message heartbeat{.type = fed::MessageType::heartbeat, .client_id = name_};
        heartbeat.metrics["num_examples"] = 100;
        socket.send(fed::encode(heartbeat));
        next_heartbeat += std::chrono::milliseconds(static_cast<int64_t>(heartbeat_s_ * 1000));
      }
      const std::optional<std::string> bytes = socket.receive(std::chrono::milliseconds(50));
      if (!bytes) continue;
      const fed::Message m = fed::decode(*bytes);
      if (m.type == fed::MessageType::fit) {
        for (const std::string& payload : attacks_[static_cast<size_t>(m.round - 1) % attacks_.size()](*this, m))
          socket.send(payload);
        ++fits_;
      } else if (m.type == fed::MessageType::reject) {
        std::lock_guard lock(mutex_);
        rejects_.push_back(m);
      } else if (m.type == fed::MessageType::shutdown) {
        shut_down_ = true;
      }
    }
  }

  const std::string endpoint_, name_;
  const std::vector<Attack> attacks_;
  const double heartbeat_s_;
  std::atomic<bool> stop_ = false, shut_down_ = false;
  std::atomic<int> fits_ = 0;
  mutable std::mutex mutex_;
  std::vector<fed::Message> rejects_;
  std::thread thread_;  // last: starts once everything it reads exists
};

// Attacks on a result's content. Each returns its payloads for HostilePeer.

// The adapter moved by `factor` times a random direction of per-element size 1e-3 (a plausible
// update, scaled).
inline HostilePeer::Attack scaled_update(double factor) {
  return [factor](const HostilePeer& peer, const fed::Message& fit) {
    fed::Message result = peer.honest_looking_result(fit, 1);
    Rng rng(static_cast<uint64_t>(fit.round));
    for (fed::NamedTensor& t : result.tensors)
      for (int64_t i = 0; i < t.tensor.numel(); ++i)
        t.tensor.as<float>()[i] += static_cast<float>(factor * 1e-3 * rng.normal());
    return std::vector<std::string>{fed::encode(result)};
  };
}

// The adapter unchanged, claiming `examples` examples.
inline HostilePeer::Attack claimed_examples(int64_t examples) {
  return [examples](const HostilePeer& peer, const fed::Message& fit) {
    return std::vector<std::string>{fed::encode(peer.honest_looking_result(fit, examples))};
  };
}

// Every value of the adapter NaN.
inline HostilePeer::Attack non_finite_values() {
  return [](const HostilePeer& peer, const fed::Message& fit) {
    fed::Message result = peer.honest_looking_result(fit, 1);
    for (fed::NamedTensor& t : result.tensors)
      for (int64_t i = 0; i < t.tensor.numel(); ++i) t.tensor.as<float>()[i] = std::numeric_limits<float>::quiet_NaN();
    return std::vector<std::string>{fed::encode(result)};
  };
}

// Attacks on the connection, each made before the attack `then` answers the fit.

// A second connection under the peer's own name joins and heartbeats while the peer is alive; the
// server must refuse it. *refused tells whether a reject came back within a second (sooner than
// the server's gone rule could see the real connection as silent).
inline HostilePeer::Attack second_connection_then(HostilePeer::Attack then,
                                                  std::shared_ptr<std::atomic<bool>> refused) {
  return [then, refused](const HostilePeer& peer, const fed::Message& fit) {
    {
      fed::ClientSocket twin(peer.endpoint(), std::nullopt, "");
      fed::Message join{.type = fed::MessageType::join, .client_id = peer.name()};
      join.metrics["num_examples"] = 100;
      twin.send(fed::encode(join));
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (!*refused && std::chrono::steady_clock::now() < deadline)
        if (const auto bytes = twin.receive(std::chrono::milliseconds(50)))
          *refused = fed::decode(*bytes).type == fed::MessageType::reject;
    }
    return then(peer, fit);
  };
}

// A raw connection declares a frame of 8 GiB; the server must close it before the bytes arrive.
// *cut_off tells whether it did within 64 MiB.
inline HostilePeer::Attack oversized_frame_then(HostilePeer::Attack then, std::shared_ptr<std::atomic<bool>> cut_off) {
  return [then, cut_off](const HostilePeer& peer, const fed::Message& fit) {
    const std::string& endpoint = peer.endpoint();
    *cut_off =
        server_closes_oversized_frame(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)), uint64_t{8} << 30, 64);
    return then(peer, fit);
  };
}

}  // namespace fe::test
