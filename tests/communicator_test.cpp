// Ranks of one participant: RankInfo from torchrun's variables, the rendezvous store, and the Gloo
// communicator with 2 and 3 ranks as threads of this process (NCCL where there are 2 GPUs).
#include "engine/communicator.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <net/if.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <optional>
#include <thread>
#include <type_traits>

#include "engine/rendezvous.h"
#include "engine/tensor.h"
#include "tests/test_files.h"
#include "tests/test_util.h"
#ifdef FE_HAVE_CUDA
#include "kernels/cuda/check.h"
#endif

namespace fe {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// --- helpers ---------------------------------------------------------------------------------

// Sets (or, for nullopt, unsets) torchrun's variables for one test and restores them after.
class ScopedEnvironment {
 public:
  static constexpr const char* kNames[] = {"RANK",        "WORLD_SIZE",  "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                           "MASTER_ADDR", "MASTER_PORT"};

  ScopedEnvironment() {
    for (const char* name : kNames) {
      const char* value = std::getenv(name);
      saved_.emplace_back(name, value ? std::optional<std::string>(value) : std::nullopt);
      ::unsetenv(name);
    }
  }
  ~ScopedEnvironment() {
    for (const auto& [name, value] : saved_) set(name.c_str(), value);
  }
  static void set(const char* name, const std::optional<std::string>& value) {
    if (value) ::setenv(name, value->c_str(), 1);
    else ::unsetenv(name);
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

RankInfo rank_info(int rank, int world, int port) {
  return {.rank = rank, .world_size = world, .local_rank = rank, .local_world_size = world, .master_port = port};
}

// Runs body(rank) for ranks 0..world-1, each on its own thread; each rank's error ("" if none).
std::vector<std::string> run_ranks(int world, const std::function<void(int rank)>& body) {
  std::vector<std::string> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  return errors;
}

void expect_no_errors(const std::vector<std::string>& errors) {
  for (size_t r = 0; r < errors.size(); ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "expected \"" << part << "\" in: " << text;
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// A Gloo world of `world` threads on a fresh port: body(communicator) on every rank.
std::vector<std::string> on_gloo_ranks(int world, const std::function<void(Communicator&)>& body) {
  const int port = test::free_tcp_port();
  return run_ranks(world, [&](int r) {
    const auto communicator = connect_ranks(CommBackend::gloo, rank_info(r, world, port), seconds(10));
    body(*communicator);
  });
}

// --- RankInfo ------------------------------------------------------------------------------

TEST(Communicator, RankInfoDefaultsToOneRank) {
  const ScopedEnvironment environment;
  const RankInfo info = RankInfo::from_environment();
  EXPECT_EQ(info.rank, 0);
  EXPECT_EQ(info.world_size, 1);
  EXPECT_EQ(info.local_rank, 0);
  EXPECT_EQ(info.local_world_size, 1);
  EXPECT_EQ(info.master_addr, "127.0.0.1");
  EXPECT_EQ(info.master_port, 29500);
  EXPECT_TRUE(info.is_root());
}

TEST(Communicator, RankInfoReadsTorchrunVariables) {
  const ScopedEnvironment environment;
  ScopedEnvironment::set("RANK", "5");
  ScopedEnvironment::set("WORLD_SIZE", "8");
  ScopedEnvironment::set("LOCAL_RANK", "1");
  ScopedEnvironment::set("LOCAL_WORLD_SIZE", "4");
  ScopedEnvironment::set("MASTER_ADDR", "node-a");
  ScopedEnvironment::set("MASTER_PORT", "1234");
  const RankInfo info = RankInfo::from_environment();
  EXPECT_EQ(info.rank, 5);
  EXPECT_EQ(info.world_size, 8);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_world_size, 4);
  EXPECT_EQ(info.master_addr, "node-a");
  EXPECT_EQ(info.master_port, 1234);
  EXPECT_FALSE(info.is_root());
}

TEST(Communicator, LocalRankDefaultsToRankOnOneNode) {
  const ScopedEnvironment environment;
  ScopedEnvironment::set("RANK", "2");
  ScopedEnvironment::set("WORLD_SIZE", "3");
  const RankInfo info = RankInfo::from_environment();
  EXPECT_EQ(info.local_rank, 2);
  EXPECT_EQ(info.local_world_size, 3);
}

TEST(Communicator, RankInfoErrorsNameTheVariableAndValue) {
  const ScopedEnvironment environment;
  const auto error_with = [](std::vector<std::pair<const char*, const char*>> values) {
    const ScopedEnvironment inner;
    for (const auto& [name, value] : values) ScopedEnvironment::set(name, value);
    return test::error_of<Error>([] { RankInfo::from_environment(); });
  };
  expect_contains(error_with({{"RANK", "one"}}), "RANK=\"one\"");
  expect_contains(error_with({{"WORLD_SIZE", "0"}}), "WORLD_SIZE=\"0\"");
  expect_contains(error_with({{"WORLD_SIZE", "2x"}}), "WORLD_SIZE=\"2x\"");
  expect_contains(error_with({{"RANK", "2"}, {"WORLD_SIZE", "2"}}), "RANK=2");
  expect_contains(error_with({{"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "1"}}), "LOCAL_RANK=1");
  expect_contains(error_with({{"MASTER_PORT", "70000"}}), "MASTER_PORT=70000");
  expect_contains(error_with({{"MASTER_PORT", "-1"}}), "MASTER_PORT=\"-1\"");
}

// --- one rank and backends -------------------------------------------------------------------

TEST(Communicator, OneRankIsTheIdentityWhateverTheBackend) {
  for (CommBackend backend : {CommBackend::single, CommBackend::gloo, CommBackend::nccl}) {
    const auto communicator = connect_ranks(backend, RankInfo{});
    EXPECT_EQ(communicator->backend(), CommBackend::single) << comm_backend_name(backend);
    EXPECT_EQ(communicator->size(), 1);
    EXPECT_EQ(communicator->all_reduce_sum(2.5), 2.5);
    std::string text = "unchanged";
    communicator->broadcast(text, 0);
    EXPECT_EQ(text, "unchanged");
    communicator->barrier();
  }
}

TEST(Communicator, SingleBackendRefusesSeveralRanks) {
  expect_contains(test::error_of<Error>([] { connect_ranks(CommBackend::single, rank_info(0, 2, 1)); }),
                  "a world of 2 ranks");
  EXPECT_TRUE(comm_backend_available(CommBackend::single));
  EXPECT_TRUE(comm_backend_available(CommBackend::gloo));
}

// --- rendezvous store ------------------------------------------------------------------------

TEST(Rendezvous, RanksSetAndGetEachOthersKeys) {
  const int world = 3, port = test::free_tcp_port();
  std::vector<std::vector<std::string>> seen(world);
  expect_no_errors(run_ranks(world, [&](int r) {
    RendezvousStore store(rank_info(r, world, port), seconds(10));
    // Rank 2 sets its key late: the others' get() waits for it.
    if (r == 2) std::this_thread::sleep_for(milliseconds(200));
    store.set(test::numbered("key/", r), std::string("value of rank ") + std::to_string(r));
    for (int other = 0; other < world; ++other) seen[r].push_back(store.get(test::numbered("key/", other)));
    store.close(seconds(10));
  }));
  for (int r = 0; r < world; ++r)
    for (int other = 0; other < world; ++other) EXPECT_EQ(seen[r][other], "value of rank " + std::to_string(other));
}

TEST(Rendezvous, ValuesAreBytesAndCanBeReplaced) {
  RendezvousStore store(rank_info(0, 1, test::free_tcp_port()), seconds(10));
  const std::string binary("a\0b\xff", 4);
  store.set("bytes", binary);
  EXPECT_EQ(store.get("bytes"), binary);
  store.set("bytes", "");
  EXPECT_EQ(store.get("bytes"), "");
  EXPECT_TRUE(store.wait({"bytes"}, milliseconds(100)));
  EXPECT_FALSE(store.wait({"bytes", "absent"}, milliseconds(100)));
}

TEST(Rendezvous, ClientsMayStartBeforeRankZero) {
  const int port = test::free_tcp_port();
  std::string value;
  expect_no_errors(run_ranks(2, [&](int r) {
    if (r == 0) std::this_thread::sleep_for(milliseconds(700));
    RendezvousStore store(rank_info(r, 2, port), seconds(10));
    if (r == 1) value = store.get("late");
    else store.set("late", "rank 0 was late");
    store.close(seconds(10));
  }));
  EXPECT_EQ(value, "rank 0 was late");
}

TEST(Rendezvous, GetOfAKeyNobodySetsNamesTheKey) {
  const int port = test::free_tcp_port();
  RendezvousStore store(rank_info(0, 1, port), milliseconds(300));
  const Clock::time_point start = Clock::now();
  const std::string error = test::error_of<Error>([&] { store.get("never/set"); });
  EXPECT_LT(seconds_since(start), 2.0);
  expect_contains(error, "'never/set'");
  expect_contains(error, "127.0.0.1:" + std::to_string(port));
  expect_contains(error, "not set within 0.3 s");
}

TEST(Rendezvous, WithoutRankZeroAGetSaysItMayNotBeRunning) {
  const int port = test::free_tcp_port();
  RendezvousStore store(rank_info(1, 2, port), milliseconds(300));
  const Clock::time_point start = Clock::now();
  const std::string error = test::error_of<Error>([&] { store.get("address/0"); });
  EXPECT_LT(seconds_since(start), 2.0);
  expect_contains(error, "'address/0'");
  expect_contains(error, "127.0.0.1:" + std::to_string(port));
  expect_contains(error, "rank 0, which hosts the store, may not be running");
}

TEST(Rendezvous, MeetNamesTheRanksThatNeverCame) {
  const int port = test::free_tcp_port();
  const std::vector<std::string> errors = run_ranks(2, [&](int r) {
    RendezvousStore store(rank_info(r, 4, port), seconds(5));
    store.meet("start", milliseconds(400));
  });
  for (const std::string& error : errors) {
    expect_contains(error, "ranks 2, 3 of 4 did not reach 'start'");
    expect_contains(error, "127.0.0.1:" + std::to_string(port));
  }
}

TEST(Rendezvous, PortInUseIsNamed) {
  const int port = test::free_tcp_port();
  const RendezvousStore first(rank_info(0, 1, port), seconds(1));
  const std::string error = test::error_of<Error>([&] { RendezvousStore second(rank_info(0, 1, port), seconds(1)); });
  expect_contains(error, "port " + std::to_string(port));
}

TEST(Rendezvous, CloseFreesThePortForTheNextRendezvous) {
  const int port = test::free_tcp_port();
  for (int round = 0; round < 2; ++round) {
    RendezvousStore store(rank_info(0, 1, port), seconds(1));
    store.set("round", std::to_string(round));
    EXPECT_EQ(store.get("round"), std::to_string(round));
    store.close(seconds(1));
  }
}

TEST(Rendezvous, LoopbackHosts) {
  for (const char* host : {"localhost", "127.0.0.1", "127.1.2.3", "::1"})
    EXPECT_TRUE(is_loopback_host(host)) << host;
  for (const char* host : {"10.0.0.1", "node-a", "0.0.0.0", "::", "128.0.0.1"})
    EXPECT_FALSE(is_loopback_host(host)) << host;
}

// --- Gloo ------------------------------------------------------------------------------------

// Rank r's i-th element: different on every rank and element, not exactly representable in f32.
double contribution(int rank, int64_t i) { return 0.1 * (rank + 1) + 1e-3 * static_cast<double>(i % 997) - 0.5; }

template <class T>
void fill_and_sum(Communicator& ranks, int64_t n, double tolerance) {
  Tensor data = Tensor::empty(Shape{n}, std::is_same_v<T, float> ? DType::f32 : DType::f64);
  for (int64_t i = 0; i < n; ++i) data.as<T>()[i] = static_cast<T>(contribution(ranks.rank(), i));
  ranks.all_reduce_sum(data);
  for (int64_t i = 0; i < n; ++i) {
    double expected = 0;
    for (int r = 0; r < ranks.size(); ++r) expected += static_cast<T>(contribution(r, i));
    ASSERT_NEAR(data.as<T>()[i], expected, tolerance) << dtype_name(data.dtype()) << " element " << i;
  }
}

TEST(Gloo, AllReduceSumsF32AndF64OnTwoAndThreeRanks) {
  for (int world : {2, 3})
    expect_no_errors(on_gloo_ranks(world, [](Communicator& ranks) {
      EXPECT_EQ(ranks.backend(), CommBackend::gloo);
      // 300k f32 elements span several of Gloo's 1 MiB segments.
      fill_and_sum<float>(ranks, 300'000, 1e-5);
      fill_and_sum<double>(ranks, 1'000, 1e-12);
      const double n = ranks.size();
      EXPECT_DOUBLE_EQ(ranks.all_reduce_sum(ranks.rank() + 0.5), n * (n - 1) / 2 + 0.5 * n);
    }));
}

TEST(Gloo, BroadcastsAStringFromRankOne) {
  std::vector<std::string> received(3);
  std::vector<std::array<std::byte, 3>> bytes(3);
  expect_no_errors(on_gloo_ranks(3, [&](Communicator& ranks) {
    std::string text = ranks.rank() == 1 ? "the adapter config from rank 1" : "another rank's longer text, replaced";
    ranks.broadcast(text, 1);
    received[ranks.rank()] = text;
    auto& mine = bytes[ranks.rank()];
    for (size_t i = 0; i < mine.size(); ++i) mine[i] = std::byte(10 * ranks.rank() + i);
    ranks.broadcast(std::span<std::byte>(mine), 2);
  }));
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(received[r], "the adapter config from rank 1") << "rank " << r;
    EXPECT_EQ(bytes[r], (std::array<std::byte, 3>{std::byte(20), std::byte(21), std::byte(22)})) << "rank " << r;
  }
}

TEST(Gloo, BarrierWaitsForEveryRank) {
  std::atomic<int> arrived = 0;
  std::vector<int> seen(3);
  expect_no_errors(on_gloo_ranks(3, [&](Communicator& ranks) {
    if (ranks.rank() == 2) std::this_thread::sleep_for(milliseconds(300));
    ++arrived;
    ranks.barrier();
    seen[ranks.rank()] = arrived;
  }));
  EXPECT_EQ(seen, (std::vector<int>{3, 3, 3}));
}

TEST(Gloo, WrongDtypeDeviceOrRootIsAnErrorNamingTheView) {
  expect_no_errors(on_gloo_ranks(2, [](Communicator& ranks) {
    int32_t ints[4] = {};
    float floats[4] = {};
    const View wrong_dtype{ints, DType::i32, {4}, Device::cpu};
    const View on_gpu{floats, DType::f32, {2, 2}, Device::cuda};
    for (const View& view : {wrong_dtype, on_gpu}) {
      const std::string error = test::error_of<Error>([&] { ranks.all_reduce_sum(view); });
      expect_contains(error, "gloo all_reduce_sum");
      expect_contains(error, view.str());
    }
    std::string text;
    expect_contains(test::error_of<Error>([&] { ranks.broadcast(text, 2); }), "root 2");
    ranks.barrier();  // the world still works after refused calls
  }));
}

TEST(Gloo, AMissingRankFailsWithinTheTimeoutNamingIt) {
  const int port = test::free_tcp_port();
  const Clock::time_point start = Clock::now();
  const std::vector<std::string> errors = run_ranks(2, [&](int r) {
    connect_ranks(CommBackend::gloo, rank_info(r, 3, port), milliseconds(1500));
  });
  EXPECT_LT(seconds_since(start), 4.0);
  for (int r = 0; r < 2; ++r) {
    const std::string& error = errors[r];
    expect_contains(error, "connect_ranks (gloo, rank " + std::to_string(r) + " of 3)");
    expect_contains(error, "rank 2 of 3 did not reach");
    expect_contains(error, "127.0.0.1:" + std::to_string(port));
  }
}

TEST(Gloo, AMissingRankZeroIsNamedToo) {
  const int port = test::free_tcp_port();
  const Clock::time_point start = Clock::now();
  const std::string error =
      test::error_of<Error>([&] { connect_ranks(CommBackend::gloo, rank_info(1, 2, port), milliseconds(1000)); });
  EXPECT_LT(seconds_since(start), 3.0);
  expect_contains(error, "rank 0, which hosts the store, may not be running");
  expect_contains(error, "127.0.0.1:" + std::to_string(port));
}

TEST(Gloo, RanksStartingSecondsApartStillConnect) {
  const int port = test::free_tcp_port();
  // Rank 0, which hosts the store, comes last.
  const int delay_ms[] = {1400, 0, 700};
  std::vector<double> sums(3);
  expect_no_errors(run_ranks(3, [&](int r) {
    std::this_thread::sleep_for(milliseconds(delay_ms[r]));
    const auto ranks = connect_ranks(CommBackend::gloo, rank_info(r, 3, port), seconds(10));
    sums[r] = ranks->all_reduce_sum(1.0);
  }));
  EXPECT_EQ(sums, (std::vector<double>{3, 3, 3}));
}

// This machine's first IPv4 address that is not loopback; empty when it has none.
std::string non_loopback_ipv4() {
  ifaddrs* interfaces = nullptr;
  if (getifaddrs(&interfaces) != 0) return "";
  std::string found;
  for (const ifaddrs* i = interfaces; i && found.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK)) continue;
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
    found = text;
  }
  freeifaddrs(interfaces);
  return found;
}

// As across machines: the ranks listen on the address that routes to MASTER_ADDR, not loopback.
TEST(Gloo, RanksMeetOverANetworkAddress) {
  const std::string address = non_loopback_ipv4();
  if (address.empty()) GTEST_SKIP() << "this machine has no IPv4 address besides loopback";
  const int port = test::free_tcp_port();
  expect_no_errors(run_ranks(2, [&](int r) {
    RankInfo info = rank_info(r, 2, port);
    info.master_addr = address;
    const auto ranks = connect_ranks(CommBackend::gloo, info, seconds(10));
    EXPECT_EQ(ranks->all_reduce_sum(r + 1.0), 3.0);
  }));
}

TEST(Gloo, ConnectsAgainOnTheSamePort) {
  const int port = test::free_tcp_port();
  for (int round = 0; round < 2; ++round)
    expect_no_errors(run_ranks(2, [&](int r) {
      const auto ranks = connect_ranks(CommBackend::gloo, rank_info(r, 2, port), seconds(10));
      EXPECT_EQ(ranks->all_reduce_sum(round + 1.0), 2 * (round + 1.0));
    }));
}

// --- NCCL ------------------------------------------------------------------------------------

// One GPU per rank: two ranks need two GPUs (a world of one is the single-rank communicator).
TEST(Communicator, NcclAllReduceAndBroadcastOnTwoGpus) {
#ifdef FE_HAVE_CUDA
  if (!comm_backend_available(CommBackend::nccl))
    GTEST_SKIP() << "built without NCCL (libnccl was not found at configure time)";
  if (cuda::device_count() < 2)
    GTEST_SKIP() << "NCCL with 2 ranks needs 2 GPUs; this machine has " << cuda::device_count();
  const int port = test::free_tcp_port();
  std::vector<float> sums(2);
  std::vector<std::string> texts(2);
  expect_no_errors(run_ranks(2, [&](int r) {
    const auto ranks = connect_ranks(CommBackend::nccl, rank_info(r, 2, port), seconds(30));
    EXPECT_EQ(ranks->backend(), CommBackend::nccl);
    const float mine = 1.5f + static_cast<float>(r);
    const Tensor value = Tensor::empty(Shape{1}, DType::f32, Device::cuda);
    FE_CUDA_CHECK(cudaMemcpy(value.data(), &mine, sizeof mine, cudaMemcpyHostToDevice));
    ranks->all_reduce_sum(value);
    FE_CUDA_CHECK(cudaMemcpy(&sums[r], value.data(), sizeof mine, cudaMemcpyDeviceToHost));
    texts[r] = r == 1 ? "from rank 1" : "";
    ranks->broadcast(texts[r], 1);
    ranks->barrier();
  }));
  EXPECT_EQ(sums, (std::vector<float>{4.0f, 4.0f}));
  EXPECT_EQ(texts, (std::vector<std::string>{"from rank 1", "from rank 1"}));
#else
  GTEST_SKIP() << "built without CUDA (nvcc was not found at configure time)";
#endif
}

}  // namespace
}  // namespace fe
