// NCCL: the communicator of GPU ranks, one GPU per rank (the rank's local_rank).
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "engine/communicator.h"
#include "engine/rendezvous.h"
#include "kernels/cuda/check.h"

// Names the failing call with file and line, like FE_CUDA_CHECK, with NCCL's own explanation.
#define FE_NCCL_CHECK(call)                                                                      \
  do {                                                                                           \
    ncclResult_t fe_nccl_err_ = (call);                                                          \
    if (fe_nccl_err_ != ncclSuccess)                                                             \
      ::fe::cuda::fail_call(#call, nccl_error_text(fe_nccl_err_).c_str(), __FILE__, __LINE__);   \
  } while (0)

namespace fe::detail {
namespace {

using std::chrono::milliseconds;

constexpr const char* kUniqueIdKey = "nccl/unique_id";

// NCCL's name for the result, with its last detailed message when it has one.
std::string nccl_error_text(ncclResult_t result) {
  std::string text = ncclGetErrorString(result);
  const char* detail = ncclGetLastError(nullptr);
  if (detail && *detail) text += std::string(" (") + detail + ")";
  return text;
}

// Owners of the CUDA and NCCL handles; the destructors run on every path out of connect_nccl.
struct StreamDestroy {
  void operator()(cudaStream_t stream) const { cudaStreamDestroy(stream); }
};
struct CommDestroy {
  void operator()(ncclComm_t comm) const { ncclCommDestroy(comm); }
};
struct DeviceFree {
  void operator()(void* memory) const { cudaFree(memory); }
};
using Stream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDestroy>;
using Comm = std::unique_ptr<std::remove_pointer_t<ncclComm_t>, CommDestroy>;
using DeviceMemory = std::unique_ptr<void, DeviceFree>;

ncclDataType_t nccl_dtype(DType dtype) { return dtype == DType::f32 ? ncclFloat32 : ncclFloat64; }

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const RankInfo& info, Comm comm, Stream stream)
      : rank_(info.rank), size_(info.world_size), gpu_(info.local_rank), comm_(std::move(comm)),
        stream_(std::move(stream)) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  CommBackend backend() const override { return CommBackend::nccl; }

  // GPU memory is reduced in place; host memory (a token count, a loss sum) travels through the
  // staging buffer.
  void all_reduce_sum(const View& data) override {
    const OpCheck check("nccl all_reduce_sum", {{"data", &data}});
    check.require(data.dtype == DType::f32 || data.dtype == DType::f64, "nccl sums f32 or f64 only");
    if (data.numel() == 0) return;
    check.require(!data.empty(), "null data");
    FE_CUDA_CHECK(cudaSetDevice(gpu_));
    const bool on_host = data.device == Device::cpu;
    // The kernels that wrote the data ran on the default stream; ours does not wait for it by itself.
    if (!on_host) FE_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    void* memory = on_host ? staging_buffer(data.nbytes()) : data.data;
    if (on_host) FE_CUDA_CHECK(cudaMemcpyAsync(memory, data.data, data.nbytes(), cudaMemcpyHostToDevice, stream_.get()));
    FE_NCCL_CHECK(ncclAllReduce(memory, memory, static_cast<size_t>(data.numel()), nccl_dtype(data.dtype), ncclSum,
                                comm_.get(), stream_.get()));
    if (on_host) FE_CUDA_CHECK(cudaMemcpyAsync(data.data, memory, data.nbytes(), cudaMemcpyDeviceToHost, stream_.get()));
    FE_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }

  // NCCL moves device memory only: the bytes travel through a staging buffer on this rank's GPU.
  void broadcast(std::span<std::byte> data, int root) override {
    if (root < 0 || root >= size_)
      throw Error("nccl broadcast: root " + std::to_string(root) + " is not a rank of this world of " +
                  std::to_string(size_));
    if (data.empty()) return;
    FE_CUDA_CHECK(cudaSetDevice(gpu_));
    void* staging = staging_buffer(data.size());
    if (rank_ == root)
      FE_CUDA_CHECK(cudaMemcpyAsync(staging, data.data(), data.size(), cudaMemcpyHostToDevice, stream_.get()));
    FE_NCCL_CHECK(ncclBroadcast(staging, staging, data.size(), ncclUint8, root, comm_.get(), stream_.get()));
    if (rank_ != root)
      FE_CUDA_CHECK(cudaMemcpyAsync(data.data(), staging, data.size(), cudaMemcpyDeviceToHost, stream_.get()));
    FE_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }

  // NCCL has no barrier: a one-element all-reduce completes on no rank before every rank joins.
  void barrier() override {
    FE_CUDA_CHECK(cudaSetDevice(gpu_));
    void* one = staging_buffer(sizeof(float));
    FE_CUDA_CHECK(cudaMemsetAsync(one, 0, sizeof(float), stream_.get()));
    FE_NCCL_CHECK(ncclAllReduce(one, one, 1, ncclFloat32, ncclSum, comm_.get(), stream_.get()));
    FE_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }

 private:
  void* staging_buffer(size_t bytes) {
    if (bytes > staging_bytes_) {
      void* memory = nullptr;
      FE_CUDA_CHECK(cudaMalloc(&memory, bytes));
      staging_.reset(memory);
      staging_bytes_ = bytes;
    }
    return staging_.get();
  }

  int rank_, size_, gpu_;
  Comm comm_;
  Stream stream_;
  DeviceMemory staging_;
  size_t staging_bytes_ = 0;
};

void select_gpu(const RankInfo& info) {
  const int gpus = cuda::device_count();
  if (info.local_rank >= gpus)
    throw Error("LOCAL_RANK=" + std::to_string(info.local_rank) + " but this machine has " + std::to_string(gpus) +
                " usable GPU(s); NCCL ranks need one GPU each");
  FE_CUDA_CHECK(cudaSetDevice(info.local_rank));
}

// Rank 0 draws NCCL's unique id and hands it to the others through the store.
ncclUniqueId share_unique_id(RendezvousStore& store, const RankInfo& info, milliseconds timeout) {
  ncclUniqueId id;
  if (info.is_root()) {
    FE_NCCL_CHECK(ncclGetUniqueId(&id));
    store.set(kUniqueIdKey, std::string(id.internal, sizeof id.internal));
  }
  store.meet("nccl.joined", timeout);
  const std::string shared = store.get(kUniqueIdKey);
  if (shared.size() != sizeof id.internal)
    throw Error("rendezvous store at " + store.address() + ": key '" + kUniqueIdKey + "' holds " +
                std::to_string(shared.size()) + " bytes, expected " + std::to_string(sizeof id.internal));
  std::memcpy(id.internal, shared.data(), sizeof id.internal);
  return id;
}

// Every rank meets the others at the store (so a missing rank is named), takes rank 0's unique id,
// and is done with the store before ncclCommInitRank, which returns on no rank before all ranks
// call it: rank 0 has stopped hosting by the time any rank returns. ncclCommInitRank itself has
// no timeout; the ranks met moments before, so only a rank dying in between can hang it.
std::unique_ptr<Communicator> connect_nccl_ranks(const RankInfo& info, milliseconds timeout) {
  select_gpu(info);
  ncclUniqueId id;
  {
    RendezvousStore store(info, timeout);
    id = share_unique_id(store, info, timeout);
    store.close(timeout);
  }
  ncclComm_t raw_comm = nullptr;
  FE_NCCL_CHECK(ncclCommInitRank(&raw_comm, info.world_size, id, info.rank));
  Comm comm(raw_comm);
  cudaStream_t raw_stream = nullptr;
  FE_CUDA_CHECK(cudaStreamCreateWithFlags(&raw_stream, cudaStreamNonBlocking));
  return std::make_unique<NcclCommunicator>(info, std::move(comm), Stream(raw_stream));
}

}  // namespace

std::unique_ptr<Communicator> connect_nccl(const RankInfo& info, milliseconds timeout) {
  try {
    return connect_nccl_ranks(info, timeout);
  } catch (const Error& e) {
    throw Error("connect_ranks (nccl, rank " + std::to_string(info.rank) + " of " + std::to_string(info.world_size) +
                "): " + e.what());
  }
}

}  // namespace fe::detail
