// CUDA twin of kernels/rmsnorm.h (CPU twin: kernels/cpu/rmsnorm.cpp), fp32 math.
//
// Forward and dx: one warp per row (grid-stride over rows). A row is read twice, for its sum and
// then for the output; the second read comes from L1/L2, not DRAM.
// dw (full-parameter training only; LoRA leaves the norm frozen): column sums over rows without
// atomics, the same bits on every run (add_column_sums in common.cuh).
#include "kernels/cuda/common.cuh"
#include "kernels/twins.h"

namespace fe::kernels::cuda {
namespace {

// Rows of `dim` elements are read in packs when every base pointer is 16-byte aligned and a row is
// a whole number of packs.
template <class T>
bool rows_vectorise(int64_t dim, std::initializer_list<const void*> pointers) {
  if (dim % kPack<T> != 0) return false;
  for (const void* p : pointers)
    if (p != nullptr && !aligned16(p)) return false;
  return true;
}

// Calls body(PackWidth<W>{}, d) over this lane's packs of a row.
template <class T, class Body>
__device__ void for_each_lane_pack(int dim, bool vector, Body&& body) {
  for_each_pack<kPack<T>>(0, dim, threadIdx.x % kWarp, kWarp, vector, body);
}

__device__ inline int64_t warp_index() {
  return (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
}
__device__ inline int64_t warp_count() { return static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp; }

template <class T, class R>
__global__ void rmsnorm_forward_kernel(T* y, R* rstd, const T* x, const T* w, int64_t rows, int dim,
                                       float eps, bool vector) {
  for (int64_t row = warp_index(); row < rows; row += warp_count()) {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    float sum_sq = 0;
    for_each_lane_pack<T>(dim, vector, [&](auto width, int64_t d) {
      constexpr int W = decltype(width)::value;
      float v[W];
      load<W>(xr + d, v);
#pragma unroll
      for (int k = 0; k < W; ++k) sum_sq += v[k] * v[k];
    });
    const float r = 1.0f / sqrtf(warp_sum(sum_sq) / dim + eps);
    if (threadIdx.x % kWarp == 0) rstd[row] = narrow<R>(r);
    for_each_lane_pack<T>(dim, vector, [&](auto width, int64_t d) {
      constexpr int W = decltype(width)::value;
      float v[W], vw[W];
      load<W>(xr + d, v);
      load<W>(w + d, vw);
#pragma unroll
      for (int k = 0; k < W; ++k) v[k] = vw[k] * (v[k] * r);
      store<W>(yr + d, v);
    });
  }
}

// With x̂ = x·r and g = dy ⊙ w: dx = r·(g − x̂·mean(g ⊙ x̂)).
template <class T, class R>
__global__ void rmsnorm_dx_kernel(T* dx, const T* dy, const T* x, const T* w, const R* rstd, int64_t rows,
                                  int dim, bool accumulate, bool vector) {
  for (int64_t row = warp_index(); row < rows; row += warp_count()) {
    const T* xr = x + row * dim;
    const T* dyr = dy + row * dim;
    T* dxr = dx + row * dim;
    const float r = widen(rstd[row]);
    float dot = 0;
    for_each_lane_pack<T>(dim, vector, [&](auto width, int64_t d) {
      constexpr int W = decltype(width)::value;
      float vx[W], vdy[W], vw[W];
      load<W>(xr + d, vx);
      load<W>(dyr + d, vdy);
      load<W>(w + d, vw);
#pragma unroll
      for (int k = 0; k < W; ++k) dot += vdy[k] * vw[k] * vx[k];
    });
    const float mean_dot = warp_sum(dot) * r / dim;
    for_each_lane_pack<T>(dim, vector, [&](auto width, int64_t d) {
      constexpr int W = decltype(width)::value;
      float vx[W], vdy[W], vw[W], out[W];
      load<W>(xr + d, vx);
      load<W>(dyr + d, vdy);
      load<W>(w + d, vw);
      if (accumulate) load<W>(dxr + d, out);
#pragma unroll
      for (int k = 0; k < W; ++k) {
        const float grad = r * (vdy[k] * vw[k] - vx[k] * r * mean_dot);
        out[k] = accumulate ? out[k] + grad : grad;
      }
      store<W>(dxr + d, out);
    });
  }
}

// dw's term: dy ⊙ x·r of one element.
template <class T, class R>
struct DwTerm {
  const T *dy, *x;
  const R* rstd;
  int64_t dim;
  __device__ float operator()(int64_t row, int64_t col) const {
    return widen(dy[row * dim + col]) * widen(x[row * dim + col]) * widen(rstd[row]);
  }
};

template <class T, class R>
void rmsnorm_dw(const View& dw, const View& dy, const View& x, const View& rstd, int64_t rows, int dim) {
  add_column_sums(dw.as<T>(), DwTerm<T, R>{dy.as<T>(), x.as<T>(), rstd.as<R>(), dim}, rows, dim);
}

// body(T{}, R{}) for the dtypes of x and of rstd (f32, or x's dtype).
template <class Body>
void with_row_types(const View& x, const View& rstd, Body&& body) {
  with_float_type(x.dtype, [&](auto type) {
    with_float_type(rstd.dtype, [&](auto rstd_type) { body(type, rstd_type); });
  });
}

}  // namespace

void rmsnorm_forward(const RmsNormForwardArgs& a) {
  const View &y = a.y, &rstd = a.rstd, &x = a.x, &w = a.w;
  const double eps = a.eps;
  const int dim = static_cast<int>(w.numel());
  const int64_t rows = x.numel() / dim;
  if (rows == 0) return;
  with_row_types(x, rstd, [&](auto type, auto rstd_type) {
    using T = decltype(type);
    using R = decltype(rstd_type);
    const bool vector = rows_vectorise<T>(dim, {y.data, x.data, w.data});
    rmsnorm_forward_kernel<T, R><<<grid_for(rows * kWarp), kBlock>>>(y.as<T>(), rstd.as<R>(), x.as<T>(), w.as<T>(),
                                                                     rows, dim, static_cast<float>(eps), vector);
    FE_CUDA_CHECK(cudaGetLastError());
  });
}

void rmsnorm_backward(const RmsNormBackwardArgs& a) {
  const View &dx = a.dx, &dw = a.dw, &dy = a.dy, &x = a.x, &w = a.w, &rstd = a.rstd;
  const bool accumulate = a.accumulate;
  const int dim = static_cast<int>(w.numel());
  const int64_t rows = x.numel() / dim;
  if (rows == 0) return;
  with_row_types(x, rstd, [&](auto type, auto rstd_type) {
    using T = decltype(type);
    using R = decltype(rstd_type);
    const bool vector = rows_vectorise<T>(dim, {dx.data, dy.data, x.data, w.data});
    rmsnorm_dx_kernel<T, R><<<grid_for(rows * kWarp), kBlock>>>(dx.as<T>(), dy.as<T>(), x.as<T>(), w.as<T>(),
                                                                rstd.as<R>(), rows, dim, accumulate, vector);
    FE_CUDA_CHECK(cudaGetLastError());
    if (!dw.empty()) rmsnorm_dw<T, R>(dw, dy, x, rstd, rows, dim);
  });
}

}  // namespace fe::kernels::cuda
