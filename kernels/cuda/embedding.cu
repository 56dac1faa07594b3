// CUDA twin of kernels/embedding.h (CPU twin: kernels/cpu/embedding.cpp).
//
// Forward: a byte copy of rows (16-byte units when rows and pointers allow), blocks grid-striding
// over tokens. Backward, deterministic without atomics or sorting: warp (bucket b, 32 columns) scans
// every id in order and adds the rows whose id % buckets == b to its columns of dtable, so each
// element of dtable has one writer that sees its rows in the order of n, as on the CPU. The scan
// costs N id reads per warp; the backward is only for full-parameter training (LoRA freezes the
// embedding).
#include "kernels/cuda/common.cuh"
#include "kernels/twins.h"

namespace fe::kernels::cuda {
namespace {

// U: the copy unit (uint4, or the element's size when rows are not whole 16-byte units).
template <class U>
__global__ void gather_rows_kernel(U* out, const int32_t* ids, const U* table, int64_t tokens, int64_t units) {
  for (int64_t n = blockIdx.x; n < tokens; n += gridDim.x) {
    const U* src = table + static_cast<int64_t>(ids[n]) * units;
    U* dst = out + n * units;
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) dst[u] = src[u];
  }
}

template <class T>
__global__ void embedding_backward_kernel(T* dtable, const int32_t* ids, const T* dout, int64_t tokens, int dim,
                                          int buckets) {
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t column_tiles = ceil_div(dim, kWarp);
  if (warp >= column_tiles * buckets) return;
  const int bucket = static_cast<int>(warp / column_tiles);
  const int col = static_cast<int>(warp % column_tiles) * kWarp + threadIdx.x % kWarp;
  if (col >= dim) return;
  for (int64_t n = 0; n < tokens; ++n) {
    const int id = ids[n];
    if (id % buckets != bucket) continue;
    T* cell = dtable + static_cast<int64_t>(id) * dim + col;
    *cell = narrow<T>(widen(*cell) + widen(dout[n * dim + col]));
  }
}

template <class U>
void gather_rows(const View& out, const View& ids, const View& table, int64_t row_bytes) {
  const int64_t tokens = ids.numel(), units = row_bytes / static_cast<int64_t>(sizeof(U));
  gather_rows_kernel<U><<<grid_for(tokens, 1), kBlock>>>(static_cast<U*>(out.data), ids.as<int32_t>(),
                                                         static_cast<const U*>(table.data), tokens, units);
  FE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void embedding_forward(const EmbeddingForwardArgs& a) {
  const View &out = a.out, &ids = a.ids, &table = a.table;
  if (out.numel() == 0) return;
  const int64_t row_bytes = table.shape[1] * static_cast<int64_t>(dtype_size(table.dtype));
  if (row_bytes % 16 == 0 && aligned16(out.data) && aligned16(table.data))
    gather_rows<uint4>(out, ids, table, row_bytes);
  else if (dtype_size(table.dtype) == 4)
    gather_rows<uint32_t>(out, ids, table, row_bytes);
  else
    gather_rows<uint16_t>(out, ids, table, row_bytes);
}

void embedding_backward(const EmbeddingBackwardArgs& a) {
  const View &dtable = a.dtable, &ids = a.ids, &dout = a.dout;
  const int dim = static_cast<int>(dtable.shape[1]);
  const int64_t tokens = ids.numel();
  if (tokens == 0 || dim == 0) return;
  // Enough buckets for about one wave of warps; any count gives the same result.
  const int64_t column_tiles = ceil_div(dim, kWarp);
  const int64_t wave_warps = static_cast<int64_t>(sm_count()) * (2048 / kWarp);
  const int buckets = static_cast<int>(std::clamp<int64_t>(wave_warps / column_tiles, 1, dtable.shape[0]));
  with_float_type(dtable.dtype, [&](auto type) {
    using T = decltype(type);
    const int64_t threads = column_tiles * buckets * kWarp;
    embedding_backward_kernel<T><<<static_cast<unsigned>(ceil_div(threads, kBlock)), kBlock>>>(
        dtable.as<T>(), ids.as<int32_t>(), dout.as<T>(), tokens, dim, buckets);
    FE_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace fe::kernels::cuda
