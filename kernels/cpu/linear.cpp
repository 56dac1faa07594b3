// CPU twin of kernels/linear.h's GEMM and LoRA linear layer (CUDA twin: kernels/cuda/linear.cu):
// OpenBLAS for every product.
#include <cblas.h>

#include <type_traits>
#include <vector>

#include "kernels/cpu/common.h"
#include "kernels/twins.h"

namespace fe::kernels::cpu {
namespace {

template <class T>
void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
               int64_t ldb, T beta, T* c, int64_t ldc) {
  const auto op_a = ta ? CblasTrans : CblasNoTrans, op_b = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    cblas_dgemm(CblasRowMajor, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// y[r, :] += bias for every row r of y [rows, cols].
template <class T>
void add_bias(const View& y, const View& bias) {
  const int64_t rows = y.shape[0], cols = y.shape[1];
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y.as<T>()[r * cols + c] += bias.as<T>()[c];
}

}  // namespace

void gemm(const GemmArgs& g) {
  with_float_type(g.c.dtype, [&]<class T>(T) {
    const int64_t m = g.c.shape[0], n = g.c.shape[1], k = g.transpose_a ? g.a.shape[0] : g.a.shape[1];
    if (m == 0 || n == 0) return;
    if (k == 0) {  // BLAS leaves C untouched when K = 0; the product is zero
      for (int64_t i = 0; i < m * n; ++i) g.c.as<T>()[i] *= static_cast<T>(g.beta);
      return;
    }
    blas_gemm<T>(g.transpose_a, g.transpose_b, m, n, k, static_cast<T>(g.alpha), g.a.as<T>(), g.a.shape[1], g.b.as<T>(),
                 g.b.shape[1], static_cast<T>(g.beta), g.c.as<T>(), n);
  });
}

// y = x·Wᵀ, y += bias, then xa = x·Aᵀ and y += scale·xa·Bᵀ.
void linear_forward(const LinearForwardArgs& a) {
  gemm(GemmArgs{a.y, a.x, false, a.w, true, 1.0, 0.0});
  if (!a.bias.empty()) with_float_type(a.y.dtype, [&]<class T>(T) { add_bias<T>(a.y, a.bias); });
  if (a.lora.a.empty()) return;
  gemm(GemmArgs{a.xa, a.x, false, a.lora.a, true, 1.0, 0.0});
  gemm(GemmArgs{a.y, a.xa, false, a.lora.b, true, a.lora.scale, 1.0});
}

// With dxa = scale·dy·B:  dA += dxaᵀ·x;  dB += scale·dyᵀ·xa;  dx (+)= dy·W + dxa·A;
// dW += dyᵀ·x;  dbias += Σ_rows dy.
void linear_backward(const LinearBackwardArgs& a) {
  const LinearGrads& grads = a.grads;
  const LoraBranch& lora = a.lora;
  with_float_type(a.dy.dtype, [&]<class T>(T) {
    std::vector<T> dxa_storage;
    View dxa;
    if (!lora.a.empty()) {
      const int64_t rank = lora.a.shape[0];
      dxa_storage.resize(a.dy.shape[0] * rank);
      dxa = View{dxa_storage.data(), a.dy.dtype, Shape{a.dy.shape[0], rank}, Device::cpu};
      gemm(GemmArgs{dxa, a.dy, false, lora.b, false, lora.scale, 0.0});
      if (!grads.db.empty()) gemm(GemmArgs{grads.db, a.dy, true, a.xa, false, lora.scale, 1.0});
      if (!grads.da.empty()) gemm(GemmArgs{grads.da, dxa, true, a.x, false, 1.0, 1.0});
    }
    if (!grads.dx.empty()) {
      gemm(GemmArgs{grads.dx, a.dy, false, a.w, false, 1.0, grads.accumulate_dx ? 1.0 : 0.0});
      if (!dxa.empty()) gemm(GemmArgs{grads.dx, dxa, false, lora.a, false, 1.0, 1.0});
    }
    if (!grads.dw.empty()) gemm(GemmArgs{grads.dw, a.dy, true, a.x, false, 1.0, 1.0});
    if (!grads.dbias.empty()) {
      const int64_t rows = a.dy.shape[0], cols = a.dy.shape[1];
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) grads.dbias.as<T>()[c] += a.dy.as<T>()[r * cols + c];
    }
  });
}

}  // namespace fe::kernels::cpu
