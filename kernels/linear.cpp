// The public GEMM, LoRA linear layer and ghost norms: argument checks (views of any rank seen as
// rows), then the CPU or CUDA twin (kernels/twins.h).
#include "kernels/linear.h"

#include <string>

#include "kernels/dispatch.h"
#include "kernels/twins.h"

namespace fe::kernels {
namespace {

// Any-shaped view of M·cols elements seen as [M, cols] (q's [N, H, hd] is [N, H·hd] here).
View as_rows(const char* op, const View& v, int64_t cols) {
  if (v.empty()) return v;
  if (cols <= 0 || v.numel() % cols != 0)
    throw Error(std::string(op) + ": " + v.str() + " is not a whole number of rows of " + std::to_string(cols));
  return v.reshaped(Shape{v.numel() / cols, cols});
}

// The LoRA branch's shapes against x [M, in], W [out, in] and xa [M, r]; an empty lora.a means no LoRA.
bool lora_fits(const LoraBranch& lora, const View& x, const View& w, const View& xa) {
  if (lora.a.empty()) return true;
  const int64_t rank = lora.a.shape[0];
  return lora.a.shape.rank() == 2 && lora.a.shape[1] == x.shape[1] && lora.b.shape.rank() == 2 &&
         lora.b.shape[0] == w.shape[0] && lora.b.shape[1] == rank && xa.shape[0] == x.shape[0] && xa.shape[1] == rank;
}

}  // namespace

void gemm(const View& c, const View& a, bool transpose_a, const View& b, bool transpose_b, double alpha, double beta) {
  detail::OpCheck check("gemm", {{"c", &c}, {"a", &a}, {"b", &b}});
  check.require(a.shape.rank() == 2 && b.shape.rank() == 2 && c.shape.rank() == 2, "expects 2-D views");
  const int64_t m = transpose_a ? a.shape[1] : a.shape[0];
  const int64_t k = transpose_a ? a.shape[0] : a.shape[1];
  const int64_t kb = transpose_b ? b.shape[1] : b.shape[0];
  const int64_t n = transpose_b ? b.shape[0] : b.shape[1];
  check.require(k == kb && c.shape[0] == m && c.shape[1] == n, "inner or outer dimensions disagree");
  const GemmArgs args{c, a, transpose_a, b, transpose_b, alpha, beta};
  if (detail::on_gpu(check, c)) {  // a and b share f32 or bf16; c is their dtype or f32
    check.require(a.dtype == b.dtype && (a.dtype == DType::f32 || a.dtype == DType::bf16) &&
                      (c.dtype == a.dtype || c.dtype == DType::f32),
                  "GPU GEMM takes a and b in f32 or bf16 and c in their dtype or f32");
    if constexpr (detail::kHaveCuda) cuda::gemm(args);
    return;
  }
  detail::require_cpu_float(check, c);
  cpu::gemm(args);
}

void linear_forward(const View& y_in, const View& xa_in, const View& x_in, const View& w, const View& bias,
                    const LoraBranch& lora) {
  const char* op = "linear_forward";
  const int64_t rank = lora.a.empty() ? 0 : lora.a.shape[0];
  const View y = as_rows(op, y_in, w.shape[0]), x = as_rows(op, x_in, w.shape[1]), xa = as_rows(op, xa_in, rank);
  detail::OpCheck check(
      op, {{"y", &y}, {"xa", &xa}, {"x", &x}, {"w", &w}, {"bias", &bias}, {"lora.a", &lora.a}, {"lora.b", &lora.b}});
  check.require(w.shape.rank() == 2 && x.shape[1] == w.shape[1] && y.shape[0] == x.shape[0] &&
                    y.shape[1] == w.shape[0] && (bias.empty() || bias.numel() == w.shape[0]),
                "expects x [M, in], W [out, in], bias [out], y [M, out]");
  check.require(lora_fits(lora, x, w, xa), "expects A [r, in], B [out, r], xa [M, r]");
  const LinearForwardArgs args{y, xa, x, w, bias, lora};
  if (detail::on_gpu_float(check, y)) {
    if constexpr (detail::kHaveCuda) cuda::linear_forward(args);
    return;
  }
  detail::require_cpu_float(check, y);
  cpu::linear_forward(args);
}

void linear_backward(const LinearGrads& grads, const View& dy_in, const View& x_in, const View& xa_in, const View& w,
                     const LoraBranch& lora) {
  const char* op = "linear_backward";
  const int64_t rank = lora.a.empty() ? 0 : lora.a.shape[0];
  const View dy = as_rows(op, dy_in, w.shape[0]), x = as_rows(op, x_in, w.shape[1]);
  const View xa = as_rows(op, xa_in, rank), dx = as_rows(op, grads.dx, w.shape[1]);
  detail::OpCheck check(op, {{"dx", &dx},
                             {"dy", &dy},
                             {"x", &x},
                             {"xa", &xa},
                             {"w", &w},
                             {"lora.a", &lora.a},
                             {"lora.b", &lora.b},
                             {"da", &grads.da},
                             {"db", &grads.db},
                             {"dw", &grads.dw},
                             {"dbias", &grads.dbias}});
  check.require(dy.shape[0] == x.shape[0] && dy.shape[1] == w.shape[0] && x.shape[1] == w.shape[1],
                "expects dy [M, out], x [M, in], W [out, in]");
  check.require(dx.empty() || dx.shape == x.shape, "expects dx [M, in]");
  check.require(lora_fits(lora, x, w, xa) && (lora.a.empty() || ((grads.da.empty() || grads.da.shape == lora.a.shape) &&
                                                                 (grads.db.empty() || grads.db.shape == lora.b.shape))),
                "expects A [r, in], B [out, r], xa [M, r], dA like A, dB like B");
  check.require(
      (grads.dw.empty() || grads.dw.shape == w.shape) && (grads.dbias.empty() || grads.dbias.numel() == w.shape[0]),
      "expects dW like W and dbias [out]");
  LinearBackwardArgs args{grads, dy, x, xa, w, lora};
  args.grads.dx = dx;
  if (detail::on_gpu(check, dy)) {  // the gradients may be f32 beside bf16 activations
    const detail::OpCheck compute(
        op, {{"dx", &dx}, {"dy", &dy}, {"x", &x}, {"xa", &xa}, {"w", &w}, {"lora.a", &lora.a}, {"lora.b", &lora.b}});
    detail::require_gpu_float(compute, dy);
    for (const View* g : {&grads.da, &grads.db, &grads.dw, &grads.dbias})
      check.require(g->empty() || g->dtype == dy.dtype || g->dtype == DType::f32,
                    "on the GPU, gradients are in dy's dtype or f32");
    if constexpr (detail::kHaveCuda) cuda::linear_backward(args);
    return;
  }
  detail::require_cpu_float(check, dy);
  cpu::linear_backward(args);
}

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
  const LoraSqNormsArgs args{sq_norms, dy, x, xa, lora};
  if (detail::on_gpu(check, dy)) {  // sq_norms may stay in host memory (kernels/twins.h)
    const bool gpu_float = dy.dtype == DType::f32 || dy.dtype == DType::bf16;
    check.require(gpu_float && x.dtype == dy.dtype && xa.dtype == dy.dtype && lora.b.shape[1] == rank &&
                      (lora.b.dtype == DType::f32 || lora.b.dtype == DType::bf16),
                  "on the GPU, dy, x and xa share f32 or bf16 and lora.b [out, r] is f32 or bf16");
    if constexpr (detail::kHaveCuda) cuda::lora_per_example_sq_norms(args);
    return;
  }
  detail::require_cpu_float(check, dy);
  check.require(sq_norms.device == Device::cpu, "on the CPU, sq_norms must be in host memory");
  cpu::lora_per_example_sq_norms(args);
}

}  // namespace fe::kernels
