#include "kernels/linear.h"

#include <cblas.h>

#include <vector>

#include "kernels/cpu/dispatch.h"

namespace fe::kernels {
namespace {

// Any-shaped view of M·cols elements seen as [M, cols] (q's [N, H, hd] is [N, H·hd] here).
View as_rows(const char* op, const View& v, int64_t cols) {
  if (v.empty()) return v;
  if (cols <= 0 || v.numel() % cols != 0)
    throw Error(std::string(op) + ": " + v.str() + " is not a whole number of rows of " + std::to_string(cols));
  return v.reshaped(Shape{v.numel() / cols, cols});
}

template <class T>
void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
               const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  const auto op_a = ta ? CblasTrans : CblasNoTrans, op_b = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    cblas_dgemm(CblasRowMajor, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace

void gemm(const View& c, const View& a, bool transpose_a, const View& b, bool transpose_b,
          double alpha, double beta) {
  detail::OpCheck check("gemm", {{"c", &c}, {"a", &a}, {"b", &b}});
  check.require(a.shape.rank() == 2 && b.shape.rank() == 2 && c.shape.rank() == 2, "expects 2-D views");
  const int64_t m = transpose_a ? a.shape[1] : a.shape[0];
  const int64_t k = transpose_a ? a.shape[0] : a.shape[1];
  const int64_t kb = transpose_b ? b.shape[1] : b.shape[0];
  const int64_t n = transpose_b ? b.shape[0] : b.shape[1];
  check.require(k == kb && c.shape[0] == m && c.shape[1] == n, "inner or outer dimensions disagree");
  cpu::dispatch_float(check, c, [&]<class T>(T) {
    if (m == 0 || n == 0) return;
    if (k == 0) {  // BLAS leaves C untouched when K = 0; the product is zero
      for (int64_t i = 0; i < m * n; ++i) c.as<T>()[i] *= static_cast<T>(beta);
      return;
    }
    blas_gemm<T>(transpose_a, transpose_b, m, n, k, static_cast<T>(alpha), a.as<T>(), a.shape[1],
                 b.as<T>(), b.shape[1], static_cast<T>(beta), c.as<T>(), n);
  });
}

void linear_forward(const View& y_in, const View& xa_in, const View& x_in, const View& w,
                    const View& bias, const LoraBranch& lora) {
  const char* op = "linear_forward";
  const int64_t rank = lora.a.empty() ? 0 : lora.a.shape[0];
  const View y = as_rows(op, y_in, w.shape[0]), x = as_rows(op, x_in, w.shape[1]), xa = as_rows(op, xa_in, rank);
  detail::OpCheck check(op, {{"y", &y}, {"xa", &xa}, {"x", &x}, {"w", &w},
                                           {"bias", &bias}, {"lora.a", &lora.a}, {"lora.b", &lora.b}});
  check.require(w.shape.rank() == 2 && x.shape[1] == w.shape[1] && y.shape[0] == x.shape[0] &&
                    y.shape[1] == w.shape[0] && (bias.empty() || bias.numel() == w.shape[0]),
                "expects x [M, in], W [out, in], bias [out], y [M, out]");
  gemm(y, x, false, w, true, 1.0, 0.0);
  if (!bias.empty()) {
    cpu::dispatch_float(check, y, [&]<class T>(T) {
      const int64_t rows = y.shape[0], cols = y.shape[1];
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) y.as<T>()[r * cols + c] += bias.as<T>()[c];
    });
  }
  if (lora.a.empty()) return;
  check.require(xa.shape[0] == x.shape[0] && xa.shape[1] == lora.a.shape[0],
                "expects xa [M, r] for A [r, in]");
  gemm(xa, x, false, lora.a, true, 1.0, 0.0);
  gemm(y, xa, false, lora.b, true, lora.scale, 1.0);
}

// With dxa = scale·dy·B:  dA += dxaᵀ·x;  dB += scale·dyᵀ·xa;  dx (+)= dy·W + dxa·A;
// dW += dyᵀ·x;  dbias += Σ_rows dy.
void linear_backward(const LinearGrads& grads, const View& dy_in, const View& x_in,
                     const View& xa_in, const View& w, const LoraBranch& lora) {
  const char* op = "linear_backward";
  const int64_t rank = lora.a.empty() ? 0 : lora.a.shape[0];
  const View dy = as_rows(op, dy_in, w.shape[0]), x = as_rows(op, x_in, w.shape[1]);
  const View xa = as_rows(op, xa_in, rank), dx = as_rows(op, grads.dx, w.shape[1]);
  detail::OpCheck check(op, {{"dx", &dx}, {"dy", &dy}, {"x", &x}, {"xa", &xa},
                                            {"w", &w}, {"lora.a", &lora.a}, {"lora.b", &lora.b},
                                            {"da", &grads.da}, {"db", &grads.db}, {"dw", &grads.dw},
                                            {"dbias", &grads.dbias}});
  check.require(dy.shape[0] == x.shape[0] && dy.shape[1] == w.shape[0] && x.shape[1] == w.shape[1],
                "expects dy [M, out], x [M, in], W [out, in]");
  cpu::dispatch_float(check, dy, [&]<class T>(T) {
    std::vector<T> dxa_storage;
    View dxa;
    if (!lora.a.empty()) {
      const int64_t rank = lora.a.shape[0];
      dxa_storage.resize(dy.shape[0] * rank);
      dxa = View{dxa_storage.data(), dy.dtype, Shape{dy.shape[0], rank}, Device::cpu};
      gemm(dxa, dy, false, lora.b, false, lora.scale, 0.0);
      if (!grads.db.empty()) gemm(grads.db, dy, true, xa, false, lora.scale, 1.0);
      if (!grads.da.empty()) gemm(grads.da, dxa, true, x, false, 1.0, 1.0);
    }
    if (!dx.empty()) {
      gemm(dx, dy, false, w, false, 1.0, grads.accumulate_dx ? 1.0 : 0.0);
      if (!dxa.empty()) gemm(dx, dxa, false, lora.a, false, 1.0, 1.0);
    }
    if (!grads.dw.empty()) gemm(grads.dw, dy, true, x, false, 1.0, 1.0);
    if (!grads.dbias.empty()) {
      const int64_t rows = dy.shape[0], cols = dy.shape[1];
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) grads.dbias.as<T>()[c] += dy.as<T>()[r * cols + c];
    }
  });
}

}  // namespace fe::kernels
