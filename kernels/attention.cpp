// The public attention ops: argument checks, then the CPU or CUDA twin (kernels/twins.h).
#include "kernels/attention.h"

#include <string>

#include "kernels/dispatch.h"
#include "kernels/twins.h"

namespace fe::kernels {
namespace {

// q [B, Tq, H, hd], k and v [B, Tk, Hkv, hd] with Tq ≤ Tk and H a multiple of Hkv; returns B·H·Tq,
// the size of lse.
int64_t check_dims(const detail::OpCheck& check, const View& q, const View& k, const View& v, int64_t window) {
  check.require(q.shape.rank() == 4 && k.shape.rank() == 4 && k.shape == v.shape,
                "expects q [B, Tq, H, hd], k and v [B, Tk, Hkv, hd]");
  if (window < 0) check.fail("the window must be 0 (full causal) or positive, got " + std::to_string(window));
  check.require(k.shape[0] == q.shape[0] && k.shape[3] == q.shape[3], "q, k and v must agree on B and hd");
  check.require(q.shape[1] <= k.shape[1], "queries cannot outnumber keys (Tq ≤ Tk)");
  check.require(k.shape[2] > 0 && q.shape[2] % k.shape[2] == 0, "H must be a multiple of Hkv");
  return q.shape[0] * q.shape[2] * q.shape[1];
}

// On the GPU, q, k, v, out and the gradients share one dtype, f32 or bf16; lse is f32 (recommended:
// the backward recomputes every probability from it) or that same dtype. On the CPU every floating
// view shares f32 or f64.
bool attention_on_gpu(const detail::OpCheck& check, const View& lse, std::initializer_list<const View*> activations) {
  const View& q = **activations.begin();
  if (!detail::on_gpu(check, q)) {
    detail::require_cpu_float(check, q);
    return false;
  }
  for (const View* a : activations)
    check.require(a->dtype == q.dtype, "q, k, v, out and the gradients must share one dtype");
  check.require(q.dtype == DType::f32 || q.dtype == DType::bf16, "GPU kernels take f32 or bf16");
  check.require(lse.dtype == DType::f32 || lse.dtype == q.dtype, "lse must be f32 or the dtype of q");
  return true;
}

}  // namespace

void attention_forward(const View& out, const View& lse, const View& q, const View& k, const View& v, int64_t window) {
  detail::OpCheck check("attention_forward", {{"out", &out}, {"lse", &lse}, {"q", &q}, {"k", &k}, {"v", &v}});
  const int64_t rows = check_dims(check, q, k, v, window);
  check.require(out.shape == q.shape && lse.numel() == rows, "expects out like q and lse [B, H, T]");
  const AttentionForwardArgs args{out, lse, q, k, v, window};
  if (attention_on_gpu(check, lse, {&q, &k, &v, &out})) {
    if constexpr (detail::kHaveCuda) cuda::attention_forward(args);
    return;
  }
  cpu::attention_forward(args);
}

void attention_backward(const View& dq, const View& dk, const View& dv, const View& dout, const View& q, const View& k,
                        const View& v, const View& out, const View& lse, int64_t window) {
  detail::OpCheck check("attention_backward", {{"dq", &dq},
                                               {"dk", &dk},
                                               {"dv", &dv},
                                               {"dout", &dout},
                                               {"q", &q},
                                               {"k", &k},
                                               {"v", &v},
                                               {"out", &out},
                                               {"lse", &lse}});
  const int64_t rows = check_dims(check, q, k, v, window);
  check.require(dq.shape == q.shape && dout.shape == q.shape && out.shape == q.shape && dk.shape == k.shape &&
                    dv.shape == v.shape && lse.numel() == rows,
                "gradients must match their inputs, lse [B, H, T]");
  check.require(q.shape[1] == k.shape[1], "the backward needs as many queries as keys");
  const AttentionBackwardArgs args{dq, dk, dv, dout, q, k, v, out, lse, window};
  if (attention_on_gpu(check, lse, {&q, &k, &v, &out, &dout, &dq, &dk, &dv})) {
    if constexpr (detail::kHaveCuda) cuda::attention_backward(args);
    return;
  }
  cpu::attention_backward(args);
}

}  // namespace fe::kernels
