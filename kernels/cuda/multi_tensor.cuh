// kernels/cuda/multi_tensor.cuh — one launch over a list of tensors (apex's multi_tensor_apply,
// with a device table instead of launch-sized batches). Every elementwise kernel uses it; a single
// tensor is a list of one, passed by value with no upload.
//
// Entry i of a list holds K pointers to tensors of one element count (AdamW: param, grad, m, v).
// The elements are cut into chunks of kChunk, numbered across the list; blocks loop over chunks
// (grid-stride) and a chunk's threads over its packs. Chunks start at multiples of kChunk, so an
// entry whose pointers are all 16-byte aligned is read with 128-bit loads throughout (its last
// partial pack element by element). A reduction writes one partial per chunk, so its result does
// not depend on the grid, nor on the GPU.
#pragma once

#include <array>
#include <vector>

#include "kernels/cuda/common.cuh"

namespace fe::kernels::cuda {

inline constexpr int64_t kChunk = 16384;

template <int K>
struct Entry {
  void* ptr[K];
  int64_t numel;
  int64_t first_chunk;  // this entry's first chunk in the list's numbering
  bool aligned;         // every pointer 16-byte aligned
};

template <int K>
struct Table {
  const Entry<K>* entries;  // on the device, sorted by first_chunk (lists of several)
  Entry<K> single;          // the entry of a list of one
  int count;
  int64_t chunks;

  __device__ Entry<K> entry_of(int64_t chunk) const {
    if (count == 1) return single;
    int lo = 0, hi = count - 1;  // the last entry starting at or before `chunk`
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (entries[mid].first_chunk <= chunk) lo = mid;
      else hi = mid - 1;
    }
    return entries[lo];
  }
};

// Calls body(entry, chunk) for every chunk of the block (grid-stride), then
// for_each_pack(P, ...) splits the chunk among the block's threads.
template <int K, class Body>
__device__ void for_each_chunk(const Table<K>& table, Body&& body) {
  for (int64_t chunk = blockIdx.x; chunk < table.chunks; chunk += gridDim.x) body(table.entry_of(chunk), chunk);
}

// Calls body(PackWidth<W>{}, i) over the elements of `chunk` that fall to this thread, W = P when
// the entry is aligned.
template <int P, int K, class Body>
__device__ void for_each_pack_of_chunk(const Entry<K>& e, int64_t chunk, Body&& body) {
  const int64_t begin = (chunk - e.first_chunk) * kChunk;
  const int64_t end = begin + kChunk < e.numel ? begin + kChunk : e.numel;
  for_each_pack<P>(begin, end, threadIdx.x, blockDim.x, e.aligned, body);
}

// The table of a list on the device: lists[k][i] is tensor k of entry i (views of one entry share
// their element count; empty views are left out). Lives until the kernels using it have run (its
// memory is freed in stream order).
template <int K>
class DeviceTable {
 public:
  DeviceTable(const std::array<const View*, K>& lists, size_t count) {
    std::vector<Entry<K>> entries;
    int64_t chunks = 0;
    for (size_t i = 0; i < count; ++i) {
      Entry<K> e{};
      e.numel = lists[0][i].numel();
      if (e.numel == 0) continue;
      e.first_chunk = chunks;
      e.aligned = true;
      for (int k = 0; k < K; ++k) {
        e.ptr[k] = lists[k][i].data;
        e.aligned = e.aligned && aligned16(e.ptr[k]);
      }
      chunks += ceil_div(e.numel, kChunk);
      entries.push_back(e);
    }
    table_.count = static_cast<int>(entries.size());
    table_.chunks = chunks;
    if (entries.size() == 1) {
      table_.single = entries[0];
    } else if (entries.size() > 1) {
      const size_t bytes = entries.size() * sizeof(Entry<K>);
      storage_ = device_scratch(bytes);
      FE_CUDA_CHECK(cudaMemcpyAsync(storage_.get(), entries.data(), bytes, cudaMemcpyHostToDevice, 0));
      table_.entries = static_cast<const Entry<K>*>(storage_.get());
    }
  }

  const Table<K>& table() const { return table_; }
  bool empty() const { return table_.chunks == 0; }
  // Blocks for a launch over the table: one per chunk, at most one wave.
  int grid() const { return grid_for(table_.chunks, 1); }

 private:
  Table<K> table_{};
  DeviceScratch storage_;
};

}  // namespace fe::kernels::cuda
