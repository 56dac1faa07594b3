#include "kernels/linear.h"

#include <cblas.h>

#include <vector>

#include "kernels/cpu/dispatch.h"
#include "kernels/cuda/ops.h"

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
  if (cpu::on_gpu(check, c)) {  // a and b share f32 or bf16; c is their dtype or f32
    check.require(a.dtype == b.dtype && (a.dtype == DType::f32 || a.dtype == DType::bf16) &&
                      (c.dtype == a.dtype || c.dtype == DType::f32),
                  "GPU GEMM takes a and b in f32 or bf16 and c in their dtype or f32");
    if constexpr (cpu::kHaveCuda) cuda::gemm(c, a, transpose_a, b, transpose_b, alpha, beta);
    return;
  }
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
  if (cpu::on_gpu_float(check, y)) {
    check.require(lora.a.empty() || (lora.a.shape.rank() == 2 && lora.a.shape[1] == x.shape[1] &&
                                     lora.b.shape.rank() == 2 && lora.b.shape[0] == w.shape[0] &&
                                     lora.b.shape[1] == rank && xa.shape[0] == x.shape[0] && xa.shape[1] == rank),
                  "expects A [r, in], B [out, r], xa [M, r]");
    if constexpr (cpu::kHaveCuda) cuda::linear_forward(y, xa, x, w, bias, lora.a, lora.b, lora.scale);
    return;
  }
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
  if (cpu::on_gpu(check, dy)) {  // the gradients may be f32 beside bf16 activations
    const detail::OpCheck compute(op, {{"dx", &dx}, {"dy", &dy}, {"x", &x}, {"xa", &xa}, {"w", &w},
                                       {"lora.a", &lora.a}, {"lora.b", &lora.b}});
    cpu::require_gpu_float(compute, dy);
    for (const View* g : {&grads.da, &grads.db, &grads.dw, &grads.dbias})
      check.require(g->empty() || g->dtype == dy.dtype || g->dtype == DType::f32,
                    "on the GPU, gradients are in dy's dtype or f32");
    check.require(dx.empty() || dx.shape == x.shape, "expects dx [M, in]");
    check.require(lora.a.empty() || (lora.a.shape.rank() == 2 && lora.a.shape[1] == x.shape[1] &&
                                     lora.b.shape.rank() == 2 && lora.b.shape[0] == w.shape[0] &&
                                     lora.b.shape[1] == rank && xa.shape[0] == x.shape[0] &&
                                     xa.shape[1] == rank && (grads.da.empty() || grads.da.shape == lora.a.shape) &&
                                     (grads.db.empty() || grads.db.shape == lora.b.shape)),
                  "expects A [r, in], B [out, r], xa [M, r], dA like A, dB like B");
    check.require((grads.dw.empty() || grads.dw.shape == w.shape) &&
                      (grads.dbias.empty() || grads.dbias.numel() == w.shape[0]),
                  "expects dW like W and dbias [out]");
    if constexpr (cpu::kHaveCuda)
      cuda::linear_backward(dx, grads.accumulate_dx, grads.da, grads.db, grads.dw, grads.dbias, dy, x, xa, w,
                            lora.a, lora.b, lora.scale);
    return;
  }
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

namespace fe::kernels {
namespace {

// Σ_{t,t'} (u_t·u_t')(v_t·v_t') over the T rows of one example: the squared Frobenius norm of
// Σ_t u_tᵀ v_t, from the two T×T Gram matrices.
template <class T>
double ghost_sq_norm(const T* u, int64_t u_cols, const T* v, int64_t v_cols, int64_t rows) {
  auto dot = [](const T* a, const T* b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
  };
  double total = 0;
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t t2 = 0; t2 < rows; ++t2)
      total += dot(u + t * u_cols, u + t2 * u_cols, u_cols) * dot(v + t * v_cols, v + t2 * v_cols, v_cols);
  return total;
}

}  // namespace

void lora_per_example_sq_norms(const View& sq_norms, const View& dy_in, const View& x_in, const View& xa_in,
                               const LoraBranch& lora) {
  const char* op = "lora_per_example_sq_norms";
  const int64_t rank = lora.a.shape[0], out = lora.b.shape[0], in = lora.a.shape[1];
  const View dy = as_rows(op, dy_in, out), x = as_rows(op, x_in, in), xa = as_rows(op, xa_in, rank);
  detail::OpCheck check(op, {{"dy", &dy}, {"x", &x}, {"xa", &xa}, {"lora.a", &lora.a}, {"lora.b", &lora.b}});
  const int64_t examples = sq_norms.numel();
  check.require(sq_norms.dtype == DType::f64 && examples > 0 && dy.shape[0] % examples == 0 &&
                    x.shape[0] == dy.shape[0] && xa.shape[0] == dy.shape[0],
                "expects sq_norms f64 [B] and B·T rows of dy, x and xa");
  const int64_t rows = dy.shape[0] / examples;
  if (cpu::on_gpu(check, dy)) {  // sq_norms may stay in host memory (kernels/cuda/ops.h)
    const bool gpu_float = dy.dtype == DType::f32 || dy.dtype == DType::bf16;
    check.require(gpu_float && x.dtype == dy.dtype && xa.dtype == dy.dtype && lora.b.shape[1] == rank &&
                      (lora.b.dtype == DType::f32 || lora.b.dtype == DType::bf16),
                  "on the GPU, dy, x and xa share f32 or bf16 and lora.b [out, r] is f32 or bf16");
    if constexpr (cpu::kHaveCuda) cuda::lora_per_example_sq_norms(sq_norms, dy, x, xa, lora.b, lora.scale);
    return;
  }
  cpu::dispatch_float(check, dy, [&]<class T>(T) {
    std::vector<T> dxa_storage(dy.shape[0] * rank);
    const View dxa{dxa_storage.data(), dy.dtype, Shape{dy.shape[0], rank}, Device::cpu};
    gemm(dxa, dy, false, lora.b, false, lora.scale, 0.0);
#pragma omp parallel for schedule(static) if (examples * rows * rows * (out + in) > cpu::kParallelWork)
    for (int64_t b = 0; b < examples; ++b) {
      const int64_t first = b * rows;
      const double db = lora.scale * lora.scale *
                        ghost_sq_norm(dy.as<T>() + first * out, out, xa.as<T>() + first * rank, rank, rows);
      const double da = ghost_sq_norm(dxa_storage.data() + first * rank, rank, x.as<T>() + first * in, in, rows);
      sq_norms.as<double>()[b] += db + da;
    }
  });
}

}  // namespace fe::kernels
