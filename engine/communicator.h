// engine/communicator.h — data parallelism inside one participant: R ranks (processes), each
// training on its share of every global batch, that sum their gradients before each optimizer step.
//
// Two real engines behind one interface: Gloo over TCP for CPU ranks, NCCL for GPU ranks (one GPU
// per rank, chosen by local_rank). Neither needs a shared file system or MPI: rank 0 hosts a small
// key-value store over ZeroMQ at master_addr:master_port (engine/rendezvous.h) through which the
// ranks find each other (Gloo's store; NCCL's unique id). A world of one rank needs no network.
//
// Ranks are described torchrun-style (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT), so `fedengine` can also be started by torchrun, Slurm wrappers or by hand. Gloo
// ranks listen for each other on loopback when MASTER_ADDR is loopback, else on the interface
// named by GLOO_SOCKET_IFNAME (as in PyTorch), else on the address of the machine's hostname.
// NCCL makes local_rank the calling thread's current GPU.
//
// Collectives are blocking and must be called by every rank in the same order with the same
// sizes; they are not thread-safe: call a communicator from one thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "kernels/view.h"

namespace fe {

struct RankInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;        // the rank's index on its node (its GPU with NCCL)
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";  // where rank 0 hosts the rendezvous store
  int master_port = 29500;

  // From RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT. Unset
  // variables keep the single-rank defaults (LOCAL_* default to RANK and WORLD_SIZE); a value that
  // is not a number, or a rank outside [0, world_size), is an Error naming the variable and value.
  static RankInfo from_environment();
  bool is_root() const { return rank == 0; }
};

enum class CommBackend { single, gloo, nccl };
const char* comm_backend_name(CommBackend backend);
// Whether this build has the engine: single and gloo always, nccl when built with CUDA and NCCL.
bool comm_backend_available(CommBackend backend);

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual CommBackend backend() const = 0;

  // In-place element-wise sum over all ranks of a contiguous f32 or f64 view: host memory for
  // single and gloo; GPU memory for nccl, which also takes small host views (staged through its
  // GPU), such as the scalar sums below.
  virtual void all_reduce_sum(const View& data) = 0;
  // Host bytes: after the call every rank holds root's bytes (same size on every rank).
  virtual void broadcast(std::span<std::byte> data, int root) = 0;
  virtual void barrier() = 0;

  // Built on the two above, the same for every engine.
  double all_reduce_sum(double value);
  // Root's string on every rank; the others' `text` is replaced (sizes need not match).
  void broadcast(std::string& text, int root);
};

// A world of one rank: every collective is the identity.
std::unique_ptr<Communicator> make_single_rank_communicator();

// Connects the ranks of `info` (every rank calls it; rank 0 hosts the rendezvous store). A rank
// that is not reached within `timeout` fails with an Error naming the missing ranks and the
// master address. Ranks may start in any order within `timeout`. By the time any rank returns,
// rank 0 has freed master_port, so the same port serves the next connect_ranks. Gloo collectives
// then wait up to 30 minutes for a slow rank (NCCL's without limit); a rank that dies fails Gloo's
// at once. A world of one rank returns make_single_rank_communicator() for any backend. NCCL is
// an Error in a build without CUDA and NCCL (comm_backend_available).
std::unique_ptr<Communicator> connect_ranks(CommBackend backend, const RankInfo& info,
                                            std::chrono::milliseconds timeout = std::chrono::seconds(120));

}  // namespace fe
