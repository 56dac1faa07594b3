#include "engine/communicator.h"

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace fe {
namespace detail {
// In gloo_communicator.cpp and nccl_communicator.cpp.
std::unique_ptr<Communicator> connect_gloo(const RankInfo& info, std::chrono::milliseconds timeout);
#ifdef FE_HAVE_NCCL
std::unique_ptr<Communicator> connect_nccl(const RankInfo& info, std::chrono::milliseconds timeout);
#endif
}  // namespace detail

namespace {

int int_from_environment(const char* name, int fallback, int minimum) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  int value = 0;
  const char* end = text + std::strlen(text);
  const auto [stop, error] = std::from_chars(text, end, value);
  if (error != std::errc() || stop != end || value < minimum)
    throw Error(std::string("environment variable ") + name + "=\"" + text + "\": expected an integer >= " +
                std::to_string(minimum));
  return value;
}

class SingleRank final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  CommBackend backend() const override { return CommBackend::single; }
  void all_reduce_sum(const View&) override {}
  void broadcast(std::span<std::byte>, int) override {}
  void barrier() override {}
};

}  // namespace

RankInfo RankInfo::from_environment() {
  RankInfo info;
  info.world_size = int_from_environment("WORLD_SIZE", 1, 1);
  info.rank = int_from_environment("RANK", 0, 0);
  if (info.rank >= info.world_size)
    throw Error("environment variable RANK=" + std::to_string(info.rank) + ": must be below WORLD_SIZE=" +
                std::to_string(info.world_size));
  info.local_world_size = int_from_environment("LOCAL_WORLD_SIZE", info.world_size, 1);
  info.local_rank = int_from_environment("LOCAL_RANK", info.rank, 0);
  if (info.local_rank >= info.local_world_size)
    throw Error("environment variable LOCAL_RANK=" + std::to_string(info.local_rank) +
                ": must be below LOCAL_WORLD_SIZE=" + std::to_string(info.local_world_size));
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) info.master_addr = addr;
  info.master_port = int_from_environment("MASTER_PORT", info.master_port, 1);
  if (info.master_port > 65535)
    throw Error("environment variable MASTER_PORT=" + std::to_string(info.master_port) + ": not a TCP port");
  return info;
}

const char* comm_backend_name(CommBackend backend) {
  switch (backend) {
    case CommBackend::single: return "single";
    case CommBackend::gloo: return "gloo";
    case CommBackend::nccl: return "nccl";
  }
  return "?";
}

bool comm_backend_available(CommBackend backend) {
#ifdef FE_HAVE_NCCL
  constexpr bool have_nccl = true;
#else
  constexpr bool have_nccl = false;
#endif
  return backend != CommBackend::nccl || have_nccl;
}

double Communicator::all_reduce_sum(double value) {
  all_reduce_sum(View{&value, DType::f64, {1}, Device::cpu});
  return value;
}

void Communicator::broadcast(std::string& text, int root) {
  int64_t size = static_cast<int64_t>(text.size());
  broadcast(std::as_writable_bytes(std::span(&size, 1)), root);
  text.resize(static_cast<size_t>(size));
  broadcast(std::as_writable_bytes(std::span(text.data(), text.size())), root);
}

std::unique_ptr<Communicator> make_single_rank_communicator() { return std::make_unique<SingleRank>(); }

std::unique_ptr<Communicator> connect_ranks(CommBackend backend, const RankInfo& info, std::chrono::milliseconds timeout) {
  if (info.world_size == 1 || backend == CommBackend::single) {
    if (info.world_size != 1)
      throw Error("connect_ranks: a world of " + std::to_string(info.world_size) + " ranks needs gloo or nccl");
    return make_single_rank_communicator();
  }
  if (backend == CommBackend::gloo) return detail::connect_gloo(info, timeout);
#ifdef FE_HAVE_NCCL
  return detail::connect_nccl(info, timeout);
#else
  throw Error("connect_ranks: this build of fedengine has no NCCL (built without CUDA or without libnccl)");
#endif
}

}  // namespace fe
