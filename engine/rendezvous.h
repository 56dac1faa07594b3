// engine/rendezvous.h — the small key-value store through which the ranks of one participant find
// each other (Gloo's addresses, NCCL's unique id), over ZeroMQ.
//
// Rank 0 hosts the store on a background thread, bound to master_port on every interface (on
// loopback only when master_addr is a loopback address); every rank, rank 0 included, is a client
// of tcp://master_addr:master_port. Clients may start before rank 0: requests wait (ZeroMQ keeps
// reconnecting) until rank 0 answers or the timeout passes.
//
//   RendezvousStore store(info, std::chrono::seconds(30));
//   store.meet("joined", timeout);                     // every rank is here, or an Error naming who is not
//   store.set("addr/" + std::to_string(info.rank), my_address);
//   std::string peer = store.get("addr/0");            // waits until rank 0 has set it
//   store.close(timeout);                              // rank 0 stops hosting once every rank is done
//
// Values are opaque bytes. A key that is set again takes the new value. The store is neither
// authenticated nor encrypted (like torchrun's TCPStore): it carries addresses, never data, and
// lives only while the ranks connect. Rank 0 must host it until every rank is done with it, hence
// close(); destroying rank 0's store without close() stops hosting at once (after an error).
//
// Errors are fe::Error naming the key, the store's address and, when rank 0 never answered, that
// rank 0 may not be running. A store object may be used from several threads.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/communicator.h"

namespace fe {

class RendezvousStore {
 public:
  // Rank 0 binds master_port here (an Error naming the port when it cannot); other ranks only
  // connect, which never fails at once. `timeout` bounds set() and get().
  RendezvousStore(const RankInfo& info, std::chrono::milliseconds timeout);
  ~RendezvousStore();  // never blocks on unreachable peers
  RendezvousStore(const RendezvousStore&) = delete;
  RendezvousStore& operator=(const RendezvousStore&) = delete;

  void set(const std::string& key, const std::string& value);
  // The key's value, waiting until some rank sets it or the timeout passes (then an Error).
  std::string get(const std::string& key);
  // Whether every key is set within `timeout` (false when one is not).
  bool wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);

  // A barrier over the store: returns once all world_size ranks have called meet(phase), or
  // throws an Error naming the ranks that had not within `timeout`. One meeting per phase name.
  void meet(const std::string& phase, std::chrono::milliseconds timeout);
  // Every rank calls it once done with the store. Rank 0 then waits for every rank to be done (an
  // Error naming those that are not within `timeout`) and stops hosting, freeing master_port.
  // Nothing else may be called afterwards.
  void close(std::chrono::milliseconds timeout);

  const std::string& address() const;  // "master_addr:master_port", for messages
  std::chrono::milliseconds timeout() const;

 private:
  class Client;
  class Server;
  void arrive(const std::string& phase);
  void wait_for_ranks(const std::string& phase, std::chrono::milliseconds timeout);

  int rank_;
  int world_size_;
  std::unique_ptr<Server> server_;  // rank 0 only
  std::unique_ptr<Client> client_;
};

// Whether `host` (a name or an IPv4/IPv6 literal) is this machine's loopback: "localhost",
// 127.x.y.z, ::1. Such a master keeps the ranks' traffic on loopback.
bool is_loopback_host(const std::string& host);

}  // namespace fe
