// CUDA twin of kernels/linear.h (CPU twin: kernels/cpu/linear.cpp): GEMM through cuBLASLt, fp32
// compute and accumulation on f32 or bf16 storage, and the LoRA linear layer built from it.
//
// Row-major views as cuBLASLt's column-major matrices. A row-major [r, c] buffer with leading
// dimension c is, read column-major, the matrix of its transpose: [c, r] with ld c. So the
// row-major product C = op(A)·op(B) ([m, n] = [m, k]·[k, n]) is computed as the column-major
// product Cᵀ = op(B)ᵀ·op(A)ᵀ ([n, m] = [n, k]·[k, m]): cuBLASLt's "A" is our B's buffer (stored
// [b.cols, b.rows], ld b.cols, op T when transpose_b), its "B" is our A's buffer (stored
// [a.cols, a.rows], ld a.cols, op T when transpose_a), and its C/D are our C's buffer ([n, m],
// ld n). The bias epilogue adds a vector along cuBLASLt's rows, which are our columns: the output
// features, as a linear layer's bias wants.
//
// Precision: CUBLAS_COMPUTE_32F (never TF32) with fp32 alpha/beta. a and b share f32 or bf16;
// c is their dtype or f32 (bf16 activations accumulating into fp32 gradients). With beta = 0, C
// is not read (cuBLASLt's contract, and the fallback's), so it may hold anything, NaN included.
//
// One cuBLASLt handle and one 32 MiB workspace per device, created on first use under a mutex and
// kept for the life of the process. Every matmul runs on the default (legacy) stream, which
// serialises them, so calls from several host threads may share the workspace. Each distinct
// problem (dtypes, shapes, transposes, pointer alignments, epilogue) asks cuBLASLt's heuristic
// once; the chosen algorithm is cached. Pointers are often not 256-byte aligned (rows of a larger
// tensor), so the heuristic is told each pointer's actual alignment. When cuBLASLt offers no
// algorithm (or K = 0) a plain fp32 kernel computes the product: one thread per output element,
// correct for any shape but far slower (it prints one warning per process when used for K > 0).
//
// The LoRA linear layer (y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ) runs three cuBLASLt calls:
//   1. xa = x·Aᵀ            [M, r]     (reads x once; memory-bound, K = in, N = r)
//   2. y  = s·xa·Bᵀ         [M, out]   (K = r: writes y once, reads only the small xa and B)
//   3. y  = x·Wᵀ + 1·y + bias          (the base GEMM with beta = 1 and the BIAS epilogue)
// The LoRA product goes in first and the base GEMM folds it in through its C operand, so the
// extra traffic on y is one write (step 2) plus the C read of step 3, which the base GEMM's
// epilogue overlaps with its compute. The order "y = x·Wᵀ, then y += s·xa·Bᵀ" would cost an
// extra read and write of y; folding into K ([x | s·xa]·[W | B]ᵀ) would need x copied into a
// wider buffer, a full extra pass over the activations. Expected cost over the base GEMM alone
// (bf16, H100): the read of x in step 1 and the write of y in step 2, about 2·(M·in + M·out)
// bytes at ~3 TB/s: 10-20% of a 2048x2048 layer at M = 16384, ~10% of the 2048↔8192 ones.
//
// The backward, with dxa = s·dy·B ([M, r], in the activations' dtype):
//   dxa = s·dy·B;  dB += s·dyᵀ·xa;  dA += dxaᵀ·x;
//   dx  = dxa·A (beta 1 when accumulating into dx, else 0), then dx = dy·W + 1·dx;
//   dW += dyᵀ·x;  dbias += Σ_rows dy (deterministic two-pass column sums, no atomics).
// The LoRA terms read dy twice and x once beyond the base dx GEMM. A fused kernel computing dxa
// and dB in one pass over dy would save one of those reads but needs a split-K reduction of its
// own; separate cuBLASLt GEMMs keep the results deterministic, and bench_linear measures the LoRA
// terms against the base GEMM alone, which bounds what the fusion could gain.
#include <cublasLt.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/twins.h"

#define FE_CUBLASLT_CHECK(call)                                                                 \
  do {                                                                                          \
    cublasStatus_t fe_status_ = (call);                                                         \
    if (fe_status_ != CUBLAS_STATUS_SUCCESS)                                                    \
      ::fe::cuda::fail_call(#call, cublasLtGetStatusString(fe_status_), __FILE__, __LINE__);    \
  } while (0)

namespace fe::kernels::cuda {
namespace {

inline constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // NVIDIA's advice for Hopper

// ---- per-device handle and workspace

struct LtDevice {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

// Created on first use, never destroyed: destruction at exit could run after the CUDA runtime has
// been torn down.
LtDevice& lt_device() {
  static std::mutex mutex;
  static std::vector<std::unique_ptr<LtDevice>> devices;
  int device = 0;
  FE_CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> lock(mutex);
  if (devices.size() <= static_cast<size_t>(device)) devices.resize(device + 1);
  if (!devices[device]) {
    auto created = std::make_unique<LtDevice>();
    FE_CUBLASLT_CHECK(cublasLtCreate(&created->handle));
    FE_CUDA_CHECK(cudaMalloc(&created->workspace, kWorkspaceBytes));
    devices[device] = std::move(created);
  }
  return *devices[device];
}

// ---- RAII for the descriptors

struct DescDeleter {
  void operator()(cublasLtMatmulDescOpaque_t* d) const { cublasLtMatmulDescDestroy(d); }
  void operator()(cublasLtMatrixLayoutOpaque_t* l) const { cublasLtMatrixLayoutDestroy(l); }
  void operator()(cublasLtMatmulPreferenceOpaque_t* p) const { cublasLtMatmulPreferenceDestroy(p); }
};
using MatmulDesc = std::unique_ptr<cublasLtMatmulDescOpaque_t, DescDeleter>;
using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, DescDeleter>;
using Preference = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, DescDeleter>;

// A row-major matrix: rows × cols elements, contiguous (ld = cols).
struct Mat {
  const void* data;
  DType dtype;
  int64_t rows, cols;
};

Mat mat(const View& v) { return Mat{v.data, v.dtype, v.shape[0], v.shape[1]}; }

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    default: throw Error(std::string("gemm: cuBLASLt path takes f32 or bf16, got ") + dtype_name(dtype));
  }
}

// The largest power of two (at most 256) dividing the address.
uint32_t alignment(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

// The stored (column-major) layout of a row-major matrix: [cols, rows], ld cols.
Layout layout_of(const Mat& m) {
  cublasLtMatrixLayout_t l = nullptr;
  FE_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&l, cuda_type(m.dtype), static_cast<uint64_t>(m.cols),
                                               static_cast<uint64_t>(m.rows), m.cols));
  return Layout(l);
}

// Algorithms chosen by the heuristic, per problem; `found` false when cuBLASLt has none.
struct Plan {
  bool found = false;
  cublasLtMatmulAlgo_t algo{};
};

std::string plan_key(int device, const Mat& c, const Mat& a, bool ta, const Mat& b, bool tb, const void* bias) {
  char key[320];
  std::snprintf(key, sizeof key, "%d|%d%d%d|%lld,%lld|%lld,%lld|%lld,%lld|%d%d|%u,%u,%u|%d,%u", device,
                static_cast<int>(c.dtype), static_cast<int>(a.dtype), static_cast<int>(b.dtype),
                static_cast<long long>(c.rows), static_cast<long long>(c.cols), static_cast<long long>(a.rows),
                static_cast<long long>(a.cols), static_cast<long long>(b.rows), static_cast<long long>(b.cols),
                ta ? 1 : 0, tb ? 1 : 0, alignment(c.data), alignment(a.data), alignment(b.data),
                bias != nullptr ? 1 : 0, bias != nullptr ? alignment(bias) : 0u);
  return key;
}

// C = alpha·op(A)·op(B) + beta·C (+ bias[col]) through cuBLASLt; false when it has no algorithm
// for this problem (nothing was launched then). Requires K > 0 and M, N > 0.
bool lt_matmul(const Mat& c, const Mat& a, bool ta, const Mat& b, bool tb, int64_t k, float alpha, float beta,
               const void* bias) {
  LtDevice& dev = lt_device();
  int device = 0;
  FE_CUDA_CHECK(cudaGetDevice(&device));

  cublasLtMatmulDesc_t raw_desc = nullptr;
  FE_CUBLASLT_CHECK(cublasLtMatmulDescCreate(&raw_desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const MatmulDesc desc(raw_desc);
  // cuBLASLt's A is our B, its B is our A (see the top of the file).
  const cublasOperation_t op_lt_a = tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_lt_b = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  FE_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSA, &op_lt_a, sizeof op_lt_a));
  FE_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSB, &op_lt_b, sizeof op_lt_b));
  if (bias != nullptr) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    FE_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                     sizeof epilogue));
    FE_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                     sizeof bias));
    const int32_t bias_type = cuda_type(c.dtype);  // the bias has the output's dtype
    FE_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                     sizeof bias_type));
  }
  const Layout lt_a = layout_of(b), lt_b = layout_of(a), lt_c = layout_of(c);

  static std::mutex cache_mutex;
  static std::map<std::string, Plan> cache;
  const std::string key = plan_key(device, c, a, ta, b, tb, bias);
  Plan plan;
  bool cached = false;
  {
    const std::lock_guard<std::mutex> lock(cache_mutex);
    const auto it = cache.find(key);
    if (it != cache.end()) {
      plan = it->second;
      cached = true;
    }
  }
  if (!cached) {
    cublasLtMatmulPreference_t raw_pref = nullptr;
    FE_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&raw_pref));
    const Preference pref(raw_pref);
    const uint64_t workspace = kWorkspaceBytes;
    FE_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                           &workspace, sizeof workspace));
    const uint32_t align_a = alignment(b.data), align_b = alignment(a.data), align_c = alignment(c.data);
    FE_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                           &align_a, sizeof align_a));
    FE_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                           &align_b, sizeof align_b));
    FE_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                           &align_c, sizeof align_c));
    FE_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                           &align_c, sizeof align_c));
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(dev.handle, desc.get(), lt_a.get(), lt_b.get(),
                                                                 lt_c.get(), lt_c.get(), pref.get(), 1, &result,
                                                                 &returned);
    plan.found = status == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS;
    if (plan.found) plan.algo = result.algo;
    const std::lock_guard<std::mutex> lock(cache_mutex);
    cache.emplace(key, plan);
  }
  if (!plan.found) return false;
  (void)k;  // K is implied by the layouts and transposes
  // In place: C and D are the same buffer and layout, which cuBLASLt allows.
  FE_CUBLASLT_CHECK(cublasLtMatmul(dev.handle, desc.get(), &alpha, b.data, lt_a.get(), a.data, lt_b.get(), &beta,
                                   c.data, lt_c.get(), const_cast<void*>(c.data), lt_c.get(), &plan.algo,
                                   dev.workspace, kWorkspaceBytes, 0));
  return true;
}

// ---- plain kernels: the fallback GEMM, the bias add, the column sums

// One thread per output element, fp32 accumulation in order of k. C is read only when beta ≠ 0.
template <class TA, class TC>
__global__ void fallback_gemm_kernel(TC* c, const TA* a, bool ta, const TA* b, bool tb, const TC* bias, int64_t m,
                                     int64_t n, int64_t k, float alpha, float beta) {
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < m * n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx / n, j = idx % n;
    float acc = 0;
    for (int64_t p = 0; p < k; ++p) {
      const float av = widen(ta ? a[p * lda + i] : a[i * lda + p]);
      const float bv = widen(tb ? b[j * ldb + p] : b[p * ldb + j]);
      acc += av * bv;
    }
    float out = alpha * acc;
    if (beta != 0.0f) out += beta * widen(c[idx]);
    if (bias != nullptr) out += widen(bias[j]);
    c[idx] = narrow<TC>(out);
  }
}

template <class T>
__global__ void add_bias_kernel(T* y, const T* bias, int64_t rows, int64_t cols) {
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < rows * cols;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[idx] = narrow<T>(widen(y[idx]) + widen(bias[idx % cols]));
}

// dbias's term: one element of dy.
template <class T>
struct ElementTerm {
  const T* dy;
  int64_t cols;
  __device__ float operator()(int64_t row, int64_t col) const { return widen(dy[row * cols + col]); }
};

// dbias += column sums of dy [rows, cols], the same bits on every run (common.cuh).
void add_bias_gradient(const View& out, const View& dy) {
  const int64_t rows = dy.shape[0], cols = dy.shape[1];
  with_float_type(dy.dtype, [&](auto dy_type) {
    using T = decltype(dy_type);
    with_float_type(out.dtype, [&](auto out_type) {
      using G = decltype(out_type);
      add_column_sums(out.as<G>(), ElementTerm<T>{dy.as<T>(), cols}, rows, cols);
    });
  });
}

void warn_fallback_once(const Mat& c, int64_t k) {
  static std::once_flag once;
  std::call_once(once, [&] {
    std::fprintf(stderr,
                 "fedengine: cuBLASLt offered no algorithm for a GEMM [%lld x %lld, K=%lld, %s]; using the slow "
                 "fallback kernel (warned once)\n",
                 static_cast<long long>(c.rows), static_cast<long long>(c.cols), static_cast<long long>(k),
                 dtype_name(c.dtype));
  });
}

// C [m, n] = alpha·op(A)·op(B) + beta·C (+ bias[n] when given; bias has C's dtype).
void matmul(const Mat& c, const Mat& a, bool ta, const Mat& b, bool tb, double alpha, double beta,
            const void* bias = nullptr) {
  const int64_t m = c.rows, n = c.cols, k = ta ? a.rows : a.cols;
  if (m == 0 || n == 0) return;
  const float fa = static_cast<float>(alpha), fb = static_cast<float>(beta);
  if (k > 0) {
    if (bias != nullptr && aligned16(bias) && lt_matmul(c, a, ta, b, tb, k, fa, fb, bias)) return;
    if (lt_matmul(c, a, ta, b, tb, k, fa, fb, nullptr)) {
      if (bias != nullptr)
        with_float_type(c.dtype, [&](auto type) {
          using T = decltype(type);
          add_bias_kernel<T><<<grid_for(m * n), kBlock>>>(static_cast<T*>(const_cast<void*>(c.data)),
                                                          static_cast<const T*>(bias), m, n);
          FE_CUDA_CHECK(cudaGetLastError());
        });
      return;
    }
    warn_fallback_once(c, k);
  }
  with_float_type(a.dtype, [&](auto a_type) {
    using TA = decltype(a_type);
    with_float_type(c.dtype, [&](auto c_type) {
      using TC = decltype(c_type);
      fallback_gemm_kernel<TA, TC><<<grid_for(m * n), kBlock>>>(
          static_cast<TC*>(const_cast<void*>(c.data)), static_cast<const TA*>(a.data), ta,
          static_cast<const TA*>(b.data), tb, static_cast<const TC*>(bias), m, n, k, fa, fb);
      FE_CUDA_CHECK(cudaGetLastError());
    });
  });
}

}  // namespace

void gemm(const GemmArgs& g) {
  matmul(mat(g.c), mat(g.a), g.transpose_a, mat(g.b), g.transpose_b, g.alpha, g.beta);
}

void linear_forward(const LinearForwardArgs& a) {
  const View &y = a.y, &xa = a.xa, &x = a.x, &w = a.w, &bias = a.bias, &lora_a = a.lora.a, &lora_b = a.lora.b;
  const double lora_scale = a.lora.scale;
  const void* bias_data = bias.empty() ? nullptr : bias.data;
  if (lora_a.empty()) {
    matmul(mat(y), mat(x), false, mat(w), true, 1.0, 0.0, bias_data);
    return;
  }
  matmul(mat(xa), mat(x), false, mat(lora_a), true, 1.0, 0.0);           // xa = x·Aᵀ
  matmul(mat(y), mat(xa), false, mat(lora_b), true, lora_scale, 0.0);    // y = s·xa·Bᵀ
  matmul(mat(y), mat(x), false, mat(w), true, 1.0, 1.0, bias_data);      // y = x·Wᵀ + y + bias
}

void linear_backward(const LinearBackwardArgs& a) {
  const View &dx = a.grads.dx, &da = a.grads.da, &db = a.grads.db, &dw = a.grads.dw, &dbias = a.grads.dbias;
  const bool accumulate_dx = a.grads.accumulate_dx;
  const View &dy = a.dy, &x = a.x, &xa = a.xa, &w = a.w, &lora_a = a.lora.a, &lora_b = a.lora.b;
  const double lora_scale = a.lora.scale;
  const int64_t rows = dy.shape[0];
  DeviceScratch dxa_storage;
  Mat dxa{nullptr, dy.dtype, rows, 0};
  if (!lora_a.empty()) {
    const int64_t rank = lora_a.shape[0];
    dxa_storage = device_scratch(static_cast<size_t>(rows * rank) * dtype_size(dy.dtype));
    dxa = Mat{dxa_storage.get(), dy.dtype, rows, rank};
    matmul(dxa, mat(dy), false, mat(lora_b), false, lora_scale, 0.0);                 // dxa = s·dy·B
    if (!db.empty()) matmul(mat(db), mat(dy), true, mat(xa), false, lora_scale, 1.0);  // dB += s·dyᵀ·xa
    if (!da.empty()) matmul(mat(da), dxa, true, mat(x), false, 1.0, 1.0);             // dA += dxaᵀ·x
  }
  if (!dx.empty()) {
    const double beta = accumulate_dx ? 1.0 : 0.0;
    if (dxa.data != nullptr) {
      matmul(mat(dx), dxa, false, mat(lora_a), false, 1.0, beta);  // dx (+)= dxa·A
      matmul(mat(dx), mat(dy), false, mat(w), false, 1.0, 1.0);    // dx += dy·W
    } else {
      matmul(mat(dx), mat(dy), false, mat(w), false, 1.0, beta);
    }
  }
  if (!dw.empty()) matmul(mat(dw), mat(dy), true, mat(x), false, 1.0, 1.0);  // dW += dyᵀ·x
  if (!dbias.empty()) add_bias_gradient(dbias, dy);
}

}  // namespace fe::kernels::cuda
