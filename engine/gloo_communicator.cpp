// Gloo over TCP: the communicator of CPU ranks.
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <exception>

#include "engine/communicator.h"
#include "engine/rendezvous.h"

namespace fe::detail {
namespace {

using std::chrono::milliseconds;

// Collectives wait this long for a slow rank: rank 0 may be evaluating or checkpointing while the
// others already wait in the next all-reduce. A rank that dies closes its sockets, which fails the
// collectives of the others at once.
constexpr milliseconds kCollectiveTimeout = std::chrono::minutes(30);

// Gloo's store interface over ours; Gloo's keys ("0", "1", ...) get a prefix of their own.
class GlooStore final : public gloo::rendezvous::Store {
 public:
  explicit GlooStore(RendezvousStore& store) : store_(store) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    store_.set(prefixed(key), std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    const std::string value = store_.get(prefixed(key));
    return {value.begin(), value.end()};
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, store_.timeout()); }
  void wait(const std::vector<std::string>& keys, const milliseconds& timeout) override {
    std::vector<std::string> ours;
    for (const std::string& key : keys) ours.push_back(prefixed(key));
    const milliseconds limit = timeout == gloo::kNoTimeout ? store_.timeout() : timeout;
    if (store_.wait(ours, limit)) return;
    std::string names;
    for (const std::string& key : ours) names += (names.empty() ? "'" : ", '") + key + "'";
    throw Error("rendezvous store at " + store_.address() + ": keys " + names + " were not all set within " +
                std::to_string(limit.count()) + " ms; a rank may have failed while connecting");
  }

 private:
  static std::string prefixed(const std::string& key) { return "gloo/" + key; }
  RendezvousStore& store_;
};

// Gloo throws gloo::Exception (a runtime_error) and gloo::EnforceNotMet (a bare exception);
// callers see an fe::Error naming what was being done.
template <class F>
void translating_errors(const std::string& what, F&& run) {
  try {
    run();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(what + ": " + e.what());
  }
}

// This machine's address on the route to `host`: what the other nodes reach it by. (The
// hostname may resolve to a loopback address, 127.0.1.1 on Debian, that no other node can reach.)
// Connecting a UDP socket sends nothing; it only picks the route.
std::string local_address_towards(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || !found)
    throw Error("cannot resolve MASTER_ADDR '" + host + "'; set GLOO_SOCKET_IFNAME to the interface to use");
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(found, freeaddrinfo);
  const int fd = socket(found->ai_family, SOCK_DGRAM, 0);
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  const bool routed = fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0 &&
                      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0;
  if (fd >= 0) close(fd);
  char text[NI_MAXHOST] = {};
  if (!routed || getnameinfo(reinterpret_cast<sockaddr*>(&local), length, text, sizeof text, nullptr, 0, NI_NUMERICHOST) != 0)
    throw Error("no route from this machine to MASTER_ADDR '" + host + "'; set GLOO_SOCKET_IFNAME to the interface to use");
  return text;
}

// Where this rank listens for its peers. Loopback when the master is (single-machine jobs stay
// off the network); otherwise GLOO_SOCKET_IFNAME's interface as in PyTorch, else this machine's
// address on the route to the master.
gloo::transport::tcp::attr device_attr(const RankInfo& info) {
  gloo::transport::tcp::attr attr;
  if (is_loopback_host(info.master_addr)) {
    attr.hostname = info.master_addr.find(':') != std::string::npos ? "::1" : "127.0.0.1";
  } else if (const char* iface = std::getenv("GLOO_SOCKET_IFNAME"); iface && *iface) {
    attr.iface = iface;
  } else {
    attr.hostname = local_address_towards(info.master_addr, info.master_port);
  }
  return attr;
}

std::shared_ptr<gloo::transport::Device> make_device(const RankInfo& info) {
  const gloo::transport::tcp::attr attr = device_attr(info);
  const std::string where = attr.iface.empty() ? "host '" + attr.hostname + "'"
                                               : "interface '" + attr.iface + "' (GLOO_SOCKET_IFNAME)";
  std::shared_ptr<gloo::transport::Device> device;
  translating_errors("cannot listen for peers on " + where,
                     [&] { device = gloo::transport::tcp::CreateDevice(attr); });
  return device;
}

class GlooCommunicator final : public Communicator {
 public:
  explicit GlooCommunicator(std::shared_ptr<gloo::rendezvous::Context> context) : context_(std::move(context)) {}

  int rank() const override { return context_->rank; }
  int size() const override { return context_->size; }
  CommBackend backend() const override { return CommBackend::gloo; }

  void all_reduce_sum(const View& data) override {
    const OpCheck check("gloo all_reduce_sum", {{"data", &data}});
    check.require(data.device == Device::cpu, "gloo reduces host memory (GPU ranks use nccl)");
    check.require(data.dtype == DType::f32 || data.dtype == DType::f64, "gloo sums f32 or f64 only");
    if (data.numel() == 0) return;
    check.require(!data.empty(), "null data");
    translating_errors(where("all_reduce_sum"), [&] {
      if (data.dtype == DType::f32) return sum(data.as<float>(), static_cast<size_t>(data.numel()));
      sum(data.as<double>(), static_cast<size_t>(data.numel()));
    });
  }

  void broadcast(std::span<std::byte> data, int root) override {
    if (root < 0 || root >= size())
      throw Error("gloo broadcast: root " + std::to_string(root) + " is not a rank of this world of " +
                  std::to_string(size()));
    if (data.empty()) return;
    translating_errors(where("broadcast"), [&] {
      gloo::BroadcastOptions options(context_);
      options.setOutput(reinterpret_cast<uint8_t*>(data.data()), data.size());
      options.setRoot(root);
      options.setTag(next_tag());
      gloo::broadcast(options);
    });
  }

  void barrier() override {
    translating_errors(where("barrier"), [&] {
      gloo::BarrierOptions options(context_);
      options.setTag(next_tag());
      gloo::barrier(options);
    });
  }

 private:
  using ReduceFunction = void (*)(void*, const void*, const void*, size_t);

  template <class T>
  void sum(T* data, size_t count) {
    gloo::AllreduceOptions options(context_);
    options.setOutput(data, count);  // the output doubles as the input: in place
    options.setReduceFunction(static_cast<ReduceFunction>(&gloo::sum<T>));
    options.setTag(next_tag());
    gloo::allreduce(options);
  }

  // Every rank numbers its collectives alike (same calls, same order), so tags match across ranks
  // and no message of one collective can be taken for another's.
  uint32_t next_tag() { return tag_++; }

  std::string where(const char* op) const {
    return std::string("gloo ") + op + " (rank " + std::to_string(rank()) + " of " + std::to_string(size()) + ")";
  }

  std::shared_ptr<gloo::rendezvous::Context> context_;
  uint32_t tag_ = 0;
};

// Every rank meets the others at the store first, so a missing rank is named before Gloo starts
// pairing. Rank 0 stops hosting the store once every rank has its peers' addresses; the closing
// barrier keeps any rank from returning (and perhaps connecting again on the same port) before.
std::unique_ptr<Communicator> connect_gloo_ranks(const RankInfo& info, milliseconds timeout) {
  RendezvousStore store(info, timeout);
  store.meet("gloo.joined", timeout);
  std::shared_ptr<gloo::transport::Device> device = make_device(info);
  auto context = std::make_shared<gloo::rendezvous::Context>(info.rank, info.world_size);
  context->setTimeout(timeout);
  GlooStore gloo_store(store);
  translating_errors("cannot connect to the other ranks", [&] { context->connectFullMesh(gloo_store, device); });
  store.close(timeout);
  context->setTimeout(kCollectiveTimeout);
  auto communicator = std::make_unique<GlooCommunicator>(std::move(context));
  communicator->barrier();
  return communicator;
}

}  // namespace

std::unique_ptr<Communicator> connect_gloo(const RankInfo& info, milliseconds timeout) {
  try {
    return connect_gloo_ranks(info, timeout);
  } catch (const Error& e) {
    throw Error("connect_ranks (gloo, rank " + std::to_string(info.rank) + " of " + std::to_string(info.world_size) +
                "): " + e.what());
  }
}

}  // namespace fe::detail
