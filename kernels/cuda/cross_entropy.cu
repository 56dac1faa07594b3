// CUDA twin of kernels/cross_entropy.h (CPU twin: kernels/cpu/cross_entropy.cpp), fp32 math on f32
// or bf16 logits.
//
// Three launches and one small device-to-host copy:
//  1. check_targets: every target is kIgnoreIndex or in [0, V); the first bad row (atomicMin on an
//     integer: the same answer on every run) goes to a device word. The main kernel reads that word
//     and writes nothing when it is set, so a bad target leaves dlogits untouched, as on the CPU,
//     without a round trip to the host before the work.
//  2. cross_entropy_rows: one block per row. Pass 1 reads the row once in 16-byte packs (when rows
//     are whole packs and the pointers are aligned; one element at a time otherwise) and keeps an
//     online (max, Σ exp(z − max)) per thread; the pairs are combined in a fixed order (warp
//     butterfly, then the warps in order), so every thread holds the same max and sum. Pass 2 reads
//     the row again and writes grad_scale·(softmax − onehot) in place or elsewhere: each element
//     is read and then written by the same thread, and the target's logit is read by thread 0
//     before the block's barrier, so dlogits may alias logits. Ignored rows get zeros and loss 0.
//     The row's loss max + log(sum) − z[target] is stored as a double per row.
//  3. finish: one block adds the per-row losses and counts the counted rows in a fixed order
//     (double, no float atomics: the same bits on every run) and reports the first bad target.
//
// Cost: the op is memory-bound, two reads and one write of the logits (3·N·V·sizeof(T) bytes; the
// second read hits L2 only when a row was read recently enough, e.g. V = 32000 bf16 is 64 KB a
// row). Exponentials are exp2f on log2-scaled differences, two per element. Expected: close to
// the copy bandwidth for V ≥ 32000 when V is a multiple of the pack (8 bf16, 4 f32); odd V takes
// the one-element path, several times slower. Small V (a few hundred) leaves blocks of 64 threads
// mostly idle, but those calls are tiny.
#include <climits>

#include "kernels/cross_entropy.h"
#include "kernels/cuda/common.cuh"
#include "kernels/twins.h"

namespace fe::kernels::cuda {
namespace {

inline constexpr float kLog2e = 1.4426950408889634f;
// What cudaMemsetAsync(…, 0x7f, 8) leaves in the bad-row word: above any row, so atomicMin keeps
// the first bad one. (LLONG_MAX, 0x7fff…ff, is not a byte pattern a memset can write.)
inline constexpr long long kNoBadRow = 0x7f7f7f7f7f7f7f7fLL;

struct DeviceResult {
  double loss_sum;
  long long count;
  long long bad_row;  // kNoBadRow when every target is valid
  int bad_target;
};

__global__ void check_targets_kernel(long long* bad_row, const int32_t* targets, int64_t rows, int64_t vocab) {
  for (int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; n < rows;
       n += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t t = targets[n];
    if (t != kIgnoreIndex && (t < 0 || t >= vocab)) atomicMin(bad_row, static_cast<long long>(n));
  }
}

// The running (max, Σ exp(z − max)) of a set of logits; the empty set is (−inf, 0).
struct MaxSum {
  float max;
  float sum;
};

__device__ inline MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  // An empty side contributes nothing (and −inf − −inf would be NaN).
  const float sa = a.sum == 0.0f ? 0.0f : a.sum * exp2f((a.max - m) * kLog2e);
  const float sb = b.sum == 0.0f ? 0.0f : b.sum * exp2f((b.max - m) * kLog2e);
  return {m, sa + sb};  // symmetric in a and b, bit for bit: the butterfly gives every lane the same
}

// Adds W logits to a running pair: one rescale per pack at most.
template <int W>
__device__ inline void accumulate(MaxSum& acc, const float (&v)[W]) {
  float pm = v[0];
#pragma unroll
  for (int k = 1; k < W; ++k) pm = fmaxf(pm, v[k]);
  if (pm > acc.max) {
    acc.sum = acc.sum == 0.0f ? 0.0f : acc.sum * exp2f((acc.max - pm) * kLog2e);
    acc.max = pm;
  }
#pragma unroll
  for (int k = 0; k < W; ++k) acc.sum += exp2f((v[k] - acc.max) * kLog2e);
}

// Calls body(PackWidth<W>{}, i) over this thread's packs of a row of `vocab` elements: packs of P
// strided by the block when `vector`, then single elements (all of them when not `vector`).
template <int P, int kThreads, class Body>
__device__ inline void for_each_row_pack(int64_t vocab, bool vector, Body&& body) {
  int64_t rest = 0;
  if (vector) {
    rest = vocab / P * P;
#pragma unroll 4
    for (int64_t i = static_cast<int64_t>(threadIdx.x) * P; i < rest; i += static_cast<int64_t>(kThreads) * P)
      body(PackWidth<P>{}, i);
  }
  for (int64_t i = rest + threadIdx.x; i < vocab; i += kThreads) body(PackWidth<1>{}, i);
}

template <class T, int kThreads>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_rows_kernel(T* dlogits, const T* logits, const int32_t* targets, double* row_loss,
                              const long long* bad_row, int64_t vocab, float grad_scale, bool vector) {
  constexpr int P = kPack<T>;
  constexpr int kWarps = kThreads / kWarp;
  __shared__ MaxSum warp_pairs[kWarps];
  if (*bad_row != kNoBadRow) return;  // the host raises; nothing is written
  const int64_t row = blockIdx.x;
  const T* z = logits + row * vocab;
  T* dz = dlogits == nullptr ? nullptr : dlogits + row * vocab;
  const int32_t target = targets[row];

  if (target == kIgnoreIndex) {
    if (threadIdx.x == 0) row_loss[row] = 0.0;
    if (dz != nullptr)
      for_each_row_pack<P, kThreads>(vocab, vector, [&](auto width, int64_t i) {
        constexpr int W = decltype(width)::value;
        float zero[W] = {};
        store<W>(dz + i, zero);
      });
    return;
  }

  // Pass 1: max and Σ exp(z − max) of the row.
  MaxSum acc{-INFINITY, 0.0f};
  for_each_row_pack<P, kThreads>(vocab, vector, [&](auto width, int64_t i) {
    constexpr int W = decltype(width)::value;
    float v[W];
    load<W>(z + i, v);
    accumulate<W>(acc, v);
  });
  float target_logit = 0;
  if (threadIdx.x == 0) target_logit = widen(z[target]);  // before the barrier: pass 2 may overwrite it
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    acc = combine(acc, {__shfl_xor_sync(0xffffffffu, acc.max, offset), __shfl_xor_sync(0xffffffffu, acc.sum, offset)});
  if (threadIdx.x % kWarp == 0) warp_pairs[threadIdx.x / kWarp] = acc;
  __syncthreads();
  MaxSum total = warp_pairs[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) total = combine(total, warp_pairs[w]);
  if (threadIdx.x == 0)
    row_loss[row] = static_cast<double>(total.max) + log(static_cast<double>(total.sum)) -
                    static_cast<double>(target_logit);
  if (dz == nullptr) return;

  // Pass 2: dz = grad_scale·(exp(z − max)/sum − [i == target]).
  const float inv_sum = 1.0f / total.sum;
  for_each_row_pack<P, kThreads>(vocab, vector, [&](auto width, int64_t i) {
    constexpr int W = decltype(width)::value;
    float v[W];
    load<W>(z + i, v);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float p = exp2f((v[k] - total.max) * kLog2e) * inv_sum;
      v[k] = grad_scale * (i + k == target ? p - 1.0f : p);
    }
    store<W>(dz + i, v);
  });
}

// One block: Σ row losses and the count of counted rows, in a fixed order.
__global__ void __launch_bounds__(kBlock)
    finish_kernel(DeviceResult* result, const double* row_loss, const int32_t* targets, const long long* bad_row,
                  int64_t rows) {
  double loss = 0;
  long long count = 0;
  for (int64_t n = threadIdx.x; n < rows; n += kBlock) {
    loss += row_loss[n];
    count += targets[n] != kIgnoreIndex;
  }
  loss = block_sum(loss);
  count = block_sum(count);
  if (threadIdx.x == 0) {
    const long long bad = *bad_row;
    *result = DeviceResult{loss, count, bad, bad != kNoBadRow ? targets[bad] : 0};
  }
}

template <class T, int kThreads>
void launch_rows(const View& dlogits, const View& logits, const View& targets, double* row_loss,
                 const long long* bad_row, int64_t rows, int64_t vocab, double grad_scale) {
  constexpr int P = kPack<T>;
  const bool vector = vocab % P == 0 && aligned16(logits.data) && (dlogits.empty() || aligned16(dlogits.data));
  cross_entropy_rows_kernel<T, kThreads><<<static_cast<unsigned>(rows), kThreads>>>(
      dlogits.empty() ? nullptr : dlogits.as<T>(), logits.as<T>(), targets.as<int32_t>(), row_loss, bad_row,
      vocab, static_cast<float>(grad_scale), vector);
  FE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

CrossEntropySums cross_entropy(const CrossEntropyArgs& a) {
  const View &dlogits = a.dlogits, &logits = a.logits, &targets = a.targets;
  const double grad_scale = a.grad_scale;
  const int64_t rows = logits.shape[0], vocab = logits.shape[1];
  CrossEntropySums sums;
  if (rows == 0) return sums;
  if (rows > INT_MAX) throw Error("cross_entropy: more than 2^31 − 1 rows in one call");
  // Scratch: the result, the bad-row word, then one double per row.
  const DeviceScratch scratch = device_scratch(sizeof(DeviceResult) + sizeof(long long) + rows * sizeof(double));
  auto* result = static_cast<DeviceResult*>(scratch.get());
  auto* bad_row = reinterpret_cast<long long*>(result + 1);
  auto* row_loss = reinterpret_cast<double*>(bad_row + 1);
  FE_CUDA_CHECK(cudaMemsetAsync(bad_row, 0x7f, sizeof(long long), 0));  // kNoBadRow
  check_targets_kernel<<<grid_for(rows), kBlock>>>(bad_row, targets.as<int32_t>(), rows, vocab);
  FE_CUDA_CHECK(cudaGetLastError());
  with_float_type(logits.dtype, [&](auto type) {
    using T = decltype(type);
    if (vocab <= 2048)
      launch_rows<T, 64>(dlogits, logits, targets, row_loss, bad_row, rows, vocab, grad_scale);
    else if (vocab <= 16384)
      launch_rows<T, 256>(dlogits, logits, targets, row_loss, bad_row, rows, vocab, grad_scale);
    else
      launch_rows<T, 512>(dlogits, logits, targets, row_loss, bad_row, rows, vocab, grad_scale);
  });
  finish_kernel<<<1, kBlock>>>(result, row_loss, targets.as<int32_t>(), bad_row, rows);
  FE_CUDA_CHECK(cudaGetLastError());
  DeviceResult host{};
  FE_CUDA_CHECK(cudaMemcpy(&host, result, sizeof(host), cudaMemcpyDeviceToHost));
  if (host.bad_row != kNoBadRow) {
    sums.bad_row = host.bad_row;
    sums.bad_target = host.bad_target;
    return sums;
  }
  sums.loss_sum = host.loss_sum;
  sums.count = host.count;
  return sums;
}

}  // namespace fe::kernels::cuda
