// CUDA twin of kernels/attention.h (CPU twin: kernels/cpu/attention.cpp): causal flash attention
// with grouped-query heads, fp32 math and accumulators on f32 or bf16 storage. No [T, T] matrix is
// ever stored: the forward keeps a running max and sum per query row (online softmax) and writes
// only the output and the row's log-sum-exp; the backward recomputes the probabilities per tile
// from q, k and lse (FlashAttention-2).
//
// lse: f32 (recommended on the GPU: a bf16 log-sum-exp of magnitude ~10 is off by up to ~0.03,
// which scales every recomputed probability of the row by up to 3%) or the activations' dtype (what
// the CPU twin uses); the kernels read and write either.
//
// Tiling (every kernel: 128 threads = 8 row groups × 16 lanes; a row group is a half-warp). A
// thread owns 4 rows of a 32-row tile (rows 4·group …) and, of a 64-column tile, the columns
// lane + 16·j. Tiles live in shared memory as fp32 with rows padded to hd + 1 floats, so the
// strided reads of the score product hit 16 different banks. The products are register-tiled
// SIMT FMAs: 4×4 scores per thread, then 4 × hd/16 accumulator elements per thread.
//   forward: block = (32 query rows, head, batch); loops over the 64-key tiles up to the causal
//     limit: S = scale·Q Kᵀ, online softmax in registers (the row's max and sum are half-warp
//     shuffles), P through shared memory (read only by its own half-warp), O += P V.
//   backward, three kernels, no float atomics, the same bits on every run:
//     delta: D = rowsum(dO ⊙ O) in fp32, a warp per row;
//     dq:    block = (32 query rows, head, batch), loops over 64-key tiles: recomputes
//            P = exp(scale·q·k − lse) and dP = dO Vᵀ, dS = P ⊙ (dP − D), dQ += scale·dS K;
//     dk/dv: block = (32 keys, kv head, batch), loops over the query heads of its kv head and the
//            64-query tiles at or after its keys: recomputes Pᵀ and dPᵀ, dV += Pᵀ dO,
//            dK += scale·dSᵀ Q; a kv head's sum over its query heads stays in one block's
//            registers, in a fixed order.
//   The dq / dk-dv split recomputes S and dP twice (7 tile products instead of 5) to avoid atomics.
//   Sliding window W (0: none): a block visits only the tiles that hold a key (query, for dk/dv)
//   inside the union of its rows' windows, [first row's position − W + 1, last row's position],
//   and masks the rest of a partially covered tile like the causal edge (`visible`).
//
// Expected performance: SIMT fp32 FMAs fed from shared memory, so bound by shared-memory
// bandwidth at a fraction of the fp32 peak (roughly 5–15 TFLOP/s on an H100, against ~300+ for a
// tensor-core kernel). Later optimisations: WMMA/mma.sync (or wgmma on sm_90a) tiles with bf16
// operands, cp.async double buffering of K/V, and a split-key (flash-decoding) forward for
// Tq = 1, where this kernel runs B·H blocks that each walk all keys with 31 of 32 rows idle.
#include <cmath>
#include <string>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/twins.h"

namespace fe::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kLanes = 16;                      // lanes of a row group (a half-warp)
constexpr int kGroups = kThreads / kLanes;      // 8
constexpr int kRowsPerThread = 4;
constexpr int kTileRows = kGroups * kRowsPerThread;  // 32
constexpr int kColsPerThread = 4;
constexpr int kTileCols = kLanes * kColsPerThread;   // 64
constexpr int kPStride = kTileCols + 1;              // a [32][64] tile of P or dS, padded

template <int HD>
constexpr int kStride = HD + 1;  // padded row of a [rows][hd] tile

struct Geometry {
  int64_t batch, tq, tk, heads, kv_heads;
  int64_t window;  // 0: every earlier key
  float scale;
};

// Whether the query at position `position` (of the key sequence) attends to key `key`: causal, and
// within the window (HF's sliding_window: position − W < key ≤ position).
__device__ inline bool visible(int64_t key, int64_t position, int64_t window) {
  return key <= position && (window == 0 || key > position - window);
}

// The first key tile (a multiple of the tile width) holding a key that the query at `position`
// or a later one sees.
__device__ inline int64_t first_key_tile(int64_t position, int64_t window) {
  if (window == 0 || position < window) return 0;
  return (position - window + 1) / kTileCols * kTileCols;
}

__device__ inline float half_warp_max(float x) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

__device__ inline float half_warp_sum(float x) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// Rows [0, rows) of a tile into shared memory as fp32 ([rows][HD + 1]); row r comes from
// src + r·row_stride when r < valid and is zero otherwise (so P·V over it adds exact zeros).
// `vector`: every row start is 16-byte aligned (hd is a multiple of the pack).
template <class T, int HD>
__device__ void load_tile(float* dst, const T* src, int64_t row_stride, int rows, int valid, bool vector) {
  constexpr int S = kStride<HD>;
  if (vector) {
    constexpr int P = kPack<T>;
    constexpr int kPerRow = HD / P;
    for (int idx = threadIdx.x; idx < rows * kPerRow; idx += kThreads) {
      const int r = idx / kPerRow, c = idx % kPerRow * P;
      float v[P];
      if (r < valid) {
        load<P>(src + r * row_stride + c, v);
      } else {
#pragma unroll
        for (int e = 0; e < P; ++e) v[e] = 0.0f;
      }
#pragma unroll
      for (int e = 0; e < P; ++e) dst[r * S + c + e] = v[e];
    }
  } else {
    for (int idx = threadIdx.x; idx < rows * HD; idx += kThreads) {
      const int r = idx / HD, c = idx % HD;
      dst[r * S + c] = r < valid ? widen(src[r * row_stride + c]) : 0.0f;
    }
  }
}

// acc[i][j] += Σ_d a[row0 + i][d] · b[lane + 16·j][d]: 4 rows of `a` (the same for the half-warp,
// a broadcast) against 4 rows of `b` (one per lane, padding puts them in distinct banks).
template <int HD>
__device__ void tile_dot(float (&acc)[kRowsPerThread][kColsPerThread], const float* a, int row0,
                         const float* b, int lane) {
  constexpr int S = kStride<HD>;
#pragma unroll 4
  for (int d = 0; d < HD; ++d) {
    float av[kRowsPerThread], bv[kColsPerThread];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) av[i] = a[(row0 + i) * S + d];
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j) bv[j] = b[(lane + kLanes * j) * S + d];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

// acc[i][j] += Σ_c p[row0 + i][c] · b[c][lane + 16·j] over the 64 columns of the P tile (rows of
// b, zero where the tile ran past the sequence).
template <int HD>
__device__ void tile_accumulate(float (&acc)[kRowsPerThread][HD / kLanes], const float* p, int row0,
                                const float* b, int lane) {
  constexpr int S = kStride<HD>;
#pragma unroll 2
  for (int c = 0; c < kTileCols; ++c) {
    float pv[kRowsPerThread];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) pv[i] = p[(row0 + i) * kPStride + c];
#pragma unroll
    for (int j = 0; j < HD / kLanes; ++j) {
      const float bv = b[c * S + lane + kLanes * j];
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) acc[i][j] = fmaf(pv[i], bv, acc[i][j]);
    }
  }
}

// ---- forward ---------------------------------------------------------------------------------

template <class T, class L, int HD>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(T* out, L* lse, const T* q, const T* k, const T* v, Geometry g, bool vector) {
  constexpr int S = kStride<HD>;
  constexpr int kCols = HD / kLanes;
  extern __shared__ float smem[];
  float* sq = smem;                    // [32][S]
  float* sk = sq + kTileRows * S;      // [64][S]
  float* sv = sk + kTileCols * S;      // [64][S]
  float* sp = sv + kTileCols * S;      // [32][kPStride]

  const int group = threadIdx.x / kLanes, lane = threadIdx.x % kLanes, row0 = group * kRowsPerThread;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kTileRows;
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const int64_t kvh = h / (g.heads / g.kv_heads);
  const int64_t q_stride = g.heads * HD, kv_stride = g.kv_heads * HD;
  const int64_t offset = g.tk - g.tq;  // query i sees keys 0 … offset + i
  const int q_valid = static_cast<int>(g.tq - q0 < kTileRows ? g.tq - q0 : kTileRows);

  load_tile<T, HD>(sq, q + ((b * g.tq + q0) * g.heads + h) * HD, q_stride, kTileRows, q_valid, vector);

  float m[kRowsPerThread], l[kRowsPerThread], acc[kRowsPerThread][kCols];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < kCols; ++j) acc[i][j] = 0.0f;
  }

  const int64_t key_end = offset + q0 + q_valid;  // one past the last key of the tile's last query
  const T* kb = k + (b * g.tk * g.kv_heads + kvh) * HD;
  const T* vb = v + (b * g.tk * g.kv_heads + kvh) * HD;
  for (int64_t k0 = first_key_tile(offset + q0, g.window); k0 < key_end; k0 += kTileCols) {
    __syncthreads();  // the previous tile's K, V and (first time) nothing: sq is written above
    const int k_valid = static_cast<int>(g.tk - k0 < kTileCols ? g.tk - k0 : kTileCols);
    load_tile<T, HD>(sk, kb + k0 * kv_stride, kv_stride, kTileCols, k_valid, vector);
    load_tile<T, HD>(sv, vb + k0 * kv_stride, kv_stride, kTileCols, k_valid, vector);
    __syncthreads();

    float s[kRowsPerThread][kColsPerThread] = {};
    tile_dot<HD>(s, sq, row0, sk, lane);
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int64_t query = q0 + row0 + i;
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        const int64_t key = k0 + lane + kLanes * j;
        s[i][j] = query < g.tq && visible(key, offset + query, g.window) ? s[i][j] * g.scale : -INFINITY;
        tile_max = fmaxf(tile_max, s[i][j]);
      }
      const float m_new = fmaxf(m[i], half_warp_max(tile_max));
      const float m_ref = m_new == -INFINITY ? 0.0f : m_new;  // a row with no key yet stays at zero
      const float alpha = expf(m[i] - m_ref);
      float row_sum = 0.0f;
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        const float p = expf(s[i][j] - m_ref);
        row_sum += p;
        sp[(row0 + i) * kPStride + lane + kLanes * j] = p;
      }
      l[i] = l[i] * alpha + half_warp_sum(row_sum);
      m[i] = m_new;
#pragma unroll
      for (int j = 0; j < kCols; ++j) acc[i][j] *= alpha;
    }
    __syncwarp();  // P rows 4·group … are written and read by this half-warp only
    tile_accumulate<HD>(acc, sp, row0, sv, lane);
  }

#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t query = q0 + row0 + i;
    if (query >= g.tq) continue;
    const float inv = 1.0f / l[i];
    T* o = out + ((b * g.tq + query) * g.heads + h) * HD;
#pragma unroll
    for (int j = 0; j < kCols; ++j) o[lane + kLanes * j] = narrow<T>(acc[i][j] * inv);
    if (lane == 0) lse[(b * g.heads + h) * g.tq + query] = narrow<L>(m[i] + logf(l[i]));
  }
}

// ---- backward --------------------------------------------------------------------------------

// delta[b, h, t] = Σ_e dout ⊙ out over one row; a warp per row (b, t, h).
template <class T>
__global__ void attention_delta_kernel(float* delta, const T* dout, const T* out, Geometry g, int hd) {
  const int64_t rows = g.batch * g.tq * g.heads;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  for (int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; row < rows;
       row += warps) {
    float sum = 0.0f;
    for (int e = threadIdx.x % kWarp; e < hd; e += kWarp) sum += widen(dout[row * hd + e]) * widen(out[row * hd + e]);
    sum = warp_sum(sum);
    const int64_t h = row % g.heads, t = row / g.heads % g.tq, b = row / g.heads / g.tq;
    if (threadIdx.x % kWarp == 0) delta[(b * g.heads + h) * g.tq + t] = sum;
  }
}

template <class T, class L, int HD>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(T* dq, const T* dout, const T* q, const T* k, const T* v, const L* lse,
                        const float* delta, Geometry g, bool vector) {
  constexpr int S = kStride<HD>;
  constexpr int kCols = HD / kLanes;
  extern __shared__ float smem[];
  float* sq = smem;                     // [32][S]
  float* sdo = sq + kTileRows * S;      // [32][S]
  float* sk = sdo + kTileRows * S;      // [64][S]
  float* sv = sk + kTileCols * S;       // [64][S]
  float* sds = sv + kTileCols * S;      // [32][kPStride]

  const int group = threadIdx.x / kLanes, lane = threadIdx.x % kLanes, row0 = group * kRowsPerThread;
  const int64_t t = g.tq;  // = g.tk
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kTileRows;
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const int64_t kvh = h / (g.heads / g.kv_heads);
  const int64_t q_stride = g.heads * HD, kv_stride = g.kv_heads * HD;
  const int q_valid = static_cast<int>(t - q0 < kTileRows ? t - q0 : kTileRows);

  const int64_t row_base = ((b * t + q0) * g.heads + h) * HD;
  load_tile<T, HD>(sq, q + row_base, q_stride, kTileRows, q_valid, vector);
  load_tile<T, HD>(sdo, dout + row_base, q_stride, kTileRows, q_valid, vector);

  float row_lse[kRowsPerThread], row_delta[kRowsPerThread], acc[kRowsPerThread][kCols];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t query = q0 + row0 + i;
    row_lse[i] = query < t ? widen(lse[(b * g.heads + h) * t + query]) : 0.0f;
    row_delta[i] = query < t ? delta[(b * g.heads + h) * t + query] : 0.0f;
#pragma unroll
    for (int j = 0; j < kCols; ++j) acc[i][j] = 0.0f;
  }

  const int64_t key_end = q0 + q_valid;
  const T* kb = k + (b * t * g.kv_heads + kvh) * HD;
  const T* vb = v + (b * t * g.kv_heads + kvh) * HD;
  for (int64_t k0 = first_key_tile(q0, g.window); k0 < key_end; k0 += kTileCols) {
    __syncthreads();
    const int k_valid = static_cast<int>(t - k0 < kTileCols ? t - k0 : kTileCols);
    load_tile<T, HD>(sk, kb + k0 * kv_stride, kv_stride, kTileCols, k_valid, vector);
    load_tile<T, HD>(sv, vb + k0 * kv_stride, kv_stride, kTileCols, k_valid, vector);
    __syncthreads();

    float s[kRowsPerThread][kColsPerThread] = {}, dp[kRowsPerThread][kColsPerThread] = {};
    tile_dot<HD>(s, sq, row0, sk, lane);
    tile_dot<HD>(dp, sdo, row0, sv, lane);
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int64_t query = q0 + row0 + i;
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        const int64_t key = k0 + lane + kLanes * j;
        const float p = query < t && visible(key, query, g.window) ? expf(s[i][j] * g.scale - row_lse[i]) : 0.0f;
        sds[(row0 + i) * kPStride + lane + kLanes * j] = p * (dp[i][j] - row_delta[i]) * g.scale;
      }
    }
    __syncwarp();  // dS rows 4·group … are written and read by this half-warp only
    tile_accumulate<HD>(acc, sds, row0, sk, lane);
  }

#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t query = q0 + row0 + i;
    if (query >= t) continue;
    T* o = dq + ((b * t + query) * g.heads + h) * HD;
#pragma unroll
    for (int j = 0; j < kCols; ++j) o[lane + kLanes * j] = narrow<T>(acc[i][j]);
  }
}

template <class T, class L, int HD>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const L* lse,
                          const float* delta, Geometry g, bool vector) {
  constexpr int S = kStride<HD>;
  constexpr int kCols = HD / kLanes;
  extern __shared__ float smem[];
  float* sk = smem;                     // [32][S]: this block's keys
  float* sv = sk + kTileRows * S;       // [32][S]
  float* sq = sv + kTileRows * S;       // [64][S]: a tile of queries
  float* sdo = sq + kTileCols * S;      // [64][S]
  float* sp = sdo + kTileCols * S;      // [32][kPStride]: Pᵀ (keys × queries), then scale·dSᵀ

  const int group = threadIdx.x / kLanes, lane = threadIdx.x % kLanes, row0 = group * kRowsPerThread;
  const int64_t t = g.tq;  // = g.tk
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kTileRows;
  const int64_t kvh = blockIdx.y, b = blockIdx.z;
  const int64_t group_size = g.heads / g.kv_heads;
  const int64_t q_stride = g.heads * HD, kv_stride = g.kv_heads * HD;
  const int k_valid = static_cast<int>(t - k0 < kTileRows ? t - k0 : kTileRows);

  const int64_t kv_base = ((b * t + k0) * g.kv_heads + kvh) * HD;
  load_tile<T, HD>(sk, k + kv_base, kv_stride, kTileRows, k_valid, vector);
  load_tile<T, HD>(sv, v + kv_base, kv_stride, kTileRows, k_valid, vector);

  float dk_acc[kRowsPerThread][kCols], dv_acc[kRowsPerThread][kCols];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
    for (int j = 0; j < kCols; ++j) dk_acc[i][j] = dv_acc[i][j] = 0.0f;

  // Queries that see a key of this block: from k0 to (with a window) the last key + W − 1.
  const int64_t query_end = g.window > 0 && k0 + kTileRows + g.window - 1 < t ? k0 + kTileRows + g.window - 1 : t;
  for (int64_t h = kvh * group_size; h < (kvh + 1) * group_size; ++h)
    for (int64_t q0 = k0 / kTileCols * kTileCols; q0 < query_end; q0 += kTileCols) {
      __syncthreads();  // the previous tile's Q, dO (and, first time, nothing: sk, sv are above)
      const int q_valid = static_cast<int>(t - q0 < kTileCols ? t - q0 : kTileCols);
      const int64_t row_base = ((b * t + q0) * g.heads + h) * HD;
      load_tile<T, HD>(sq, q + row_base, q_stride, kTileCols, q_valid, vector);
      load_tile<T, HD>(sdo, dout + row_base, q_stride, kTileCols, q_valid, vector);
      float col_lse[kColsPerThread], col_delta[kColsPerThread];
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        const int64_t query = q0 + lane + kLanes * j;
        col_lse[j] = query < t ? widen(lse[(b * g.heads + h) * t + query]) : 0.0f;
        col_delta[j] = query < t ? delta[(b * g.heads + h) * t + query] : 0.0f;
      }
      __syncthreads();

      float s[kRowsPerThread][kColsPerThread] = {}, dp[kRowsPerThread][kColsPerThread] = {};
      tile_dot<HD>(s, sk, row0, sq, lane);   // Sᵀ: keys × queries
      tile_dot<HD>(dp, sv, row0, sdo, lane);  // dPᵀ = V dOᵀ
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) {
        const int64_t key = k0 + row0 + i;
#pragma unroll
        for (int j = 0; j < kColsPerThread; ++j) {
          const int64_t query = q0 + lane + kLanes * j;
          const float p = query < t && visible(key, query, g.window) ? expf(s[i][j] * g.scale - col_lse[j]) : 0.0f;
          sp[(row0 + i) * kPStride + lane + kLanes * j] = p;
          dp[i][j] = p * (dp[i][j] - col_delta[j]) * g.scale;  // now scale·dSᵀ
        }
      }
      __syncwarp();  // Pᵀ rows 4·group … are written and read by this half-warp only
      tile_accumulate<HD>(dv_acc, sp, row0, sdo, lane);
      __syncwarp();  // the half-warp is done reading Pᵀ; the same rows now take scale·dSᵀ
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
        for (int j = 0; j < kColsPerThread; ++j) sp[(row0 + i) * kPStride + lane + kLanes * j] = dp[i][j];
      __syncwarp();
      tile_accumulate<HD>(dk_acc, sp, row0, sq, lane);
    }

#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t key = k0 + row0 + i;
    if (key >= t) continue;
    const int64_t base = ((b * t + key) * g.kv_heads + kvh) * HD;
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      dk[base + lane + kLanes * j] = narrow<T>(dk_acc[i][j]);
      dv[base + lane + kLanes * j] = narrow<T>(dv_acc[i][j]);
    }
  }
}

// ---- host side -------------------------------------------------------------------------------

Geometry geometry(const View& q, const View& k, int64_t window) {
  return Geometry{q.shape[0],
                  q.shape[1],
                  k.shape[1],
                  q.shape[2],
                  k.shape[2],
                  window,
                  static_cast<float>(1.0 / std::sqrt(static_cast<double>(q.shape[3])))};
}

// Calls fn(std::integral_constant<int, HD>{}) for the head dims the kernels are built for.
template <class Fn>
void with_head_dim(const char* op, int64_t hd, Fn&& fn) {
  switch (hd) {
    case 64: fn(std::integral_constant<int, 64>{}); return;
    case 128: fn(std::integral_constant<int, 128>{}); return;
    default:
      throw Error(std::string(op) + ": the CUDA kernels take head_dim 64 or 128, got " + std::to_string(hd));
  }
}

// Calls fn(L{}) with L the storage type of lse: float, or the activations' T.
template <class T, class Fn>
void with_lse_type(DType lse_dtype, Fn&& fn) {
  if (lse_dtype == DType::f32)
    fn(float{});
  else
    fn(T{});
}

bool all_aligned(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (!aligned16(p)) return false;
  return true;
}

// Dynamic shared memory above 48 KiB needs an opt-in per kernel (up to 163 KiB on sm_80, 227 KiB on
// sm_90). At hd 128 the dq and dk/dv kernels take about 107 KiB (one block per SM on an A100, two on
// an H100), the forward 91 KiB; at hd 64 about half.
template <class Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes) {
  FE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

dim3 grid_of(int64_t tiles, int64_t heads, int64_t batch, const char* op) {
  if (tiles > 0x7fffffff || heads > 65535 || batch > 65535)
    throw Error(std::string(op) + ": too many tiles, heads or sequences for one CUDA grid");
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(heads), static_cast<unsigned>(batch));
}

}  // namespace

void attention_forward(const AttentionForwardArgs& a) {
  const View &out = a.out, &lse = a.lse, &q = a.q, &k = a.k, &v = a.v;
  const int64_t window = a.window;
  const Geometry g = geometry(q, k, window);
  if (g.batch == 0 || g.tq == 0 || g.heads == 0) return;
  with_head_dim("attention_forward", q.shape[3], [&](auto head_dim) {
    constexpr int HD = decltype(head_dim)::value;
    with_float_type(q.dtype, [&](auto type) {
      using T = decltype(type);
      with_lse_type<T>(lse.dtype, [&](auto lse_type) {
        using L = decltype(lse_type);
        const auto kernel = attention_forward_kernel<T, L, HD>;
        const size_t smem = sizeof(float) * ((kTileRows + 2 * kTileCols) * kStride<HD> + kTileRows * kPStride);
        allow_shared_memory(kernel, smem);
        const bool vector = all_aligned({q.data, k.data, v.data});
        kernel<<<grid_of(ceil_div(g.tq, kTileRows), g.heads, g.batch, "attention_forward"), kThreads, smem>>>(
            out.as<T>(), lse.as<L>(), q.as<T>(), k.as<T>(), v.as<T>(), g, vector);
        FE_CUDA_CHECK(cudaGetLastError());
      });
    });
  });
}

void attention_backward(const AttentionBackwardArgs& a) {
  const View &dq = a.dq, &dk = a.dk, &dv = a.dv, &dout = a.dout, &q = a.q, &k = a.k, &v = a.v, &out = a.out,
             &lse = a.lse;
  const int64_t window = a.window;
  const Geometry g = geometry(q, k, window);
  if (g.batch == 0 || g.tq == 0 || g.heads == 0) return;
  with_head_dim("attention_backward", q.shape[3], [&](auto head_dim) {
    constexpr int HD = decltype(head_dim)::value;
    with_float_type(q.dtype, [&](auto type) {
      using T = decltype(type);
      with_lse_type<T>(lse.dtype, [&](auto lse_type) {
        using L = decltype(lse_type);
        const DeviceScratch scratch = device_scratch(sizeof(float) * g.batch * g.heads * g.tq);
        float* delta = static_cast<float*>(scratch.get());
        attention_delta_kernel<T><<<grid_for(g.batch * g.tq * g.heads * kWarp), kBlock>>>(
            delta, dout.as<T>(), out.as<T>(), g, HD);
        FE_CUDA_CHECK(cudaGetLastError());

        const bool vector = all_aligned({q.data, k.data, v.data, dout.data});
        const auto dq_kernel = attention_dq_kernel<T, L, HD>;
        const size_t dq_smem =
            sizeof(float) * ((2 * kTileRows + 2 * kTileCols) * kStride<HD> + kTileRows * kPStride);
        allow_shared_memory(dq_kernel, dq_smem);
        dq_kernel<<<grid_of(ceil_div(g.tq, kTileRows), g.heads, g.batch, "attention_backward"), kThreads,
                    dq_smem>>>(dq.as<T>(), dout.as<T>(), q.as<T>(), k.as<T>(), v.as<T>(), lse.as<L>(), delta, g,
                               vector);
        FE_CUDA_CHECK(cudaGetLastError());

        const auto dkdv_kernel = attention_dkdv_kernel<T, L, HD>;
        const size_t dkdv_smem =
            sizeof(float) * ((2 * kTileRows + 2 * kTileCols) * kStride<HD> + kTileRows * kPStride);
        allow_shared_memory(dkdv_kernel, dkdv_smem);
        dkdv_kernel<<<grid_of(ceil_div(g.tk, kTileRows), g.kv_heads, g.batch, "attention_backward"), kThreads,
                      dkdv_smem>>>(dk.as<T>(), dv.as<T>(), dout.as<T>(), q.as<T>(), k.as<T>(), v.as<T>(),
                                   lse.as<L>(), delta, g, vector);
        FE_CUDA_CHECK(cudaGetLastError());
      });
    });
  });
}

}  // namespace fe::kernels::cuda
