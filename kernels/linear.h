// kernels/linear.h — dense layers with an optional LoRA branch, and the GEMM under them.
//
// y = x·Wᵀ + bias + scale·(x·Aᵀ)·Bᵀ, with PEFT's shapes: W [out, in], A [r, in], B [out, r].
// Leading dimensions of x and y are flattened: x [..., in] is M rows.
#pragma once
#include "kernels/view.h"

namespace fe::kernels {

// C = alpha·op(A)·op(B) + beta·C for 2-D views (op transposes when the flag is set).
void gemm(const View& c, const View& a, bool transpose_a, const View& b, bool transpose_b,
          double alpha, double beta);

struct LoraBranch {
  View a;             // [r, in]; empty: no LoRA on this layer
  View b;             // [out, r]
  double scale = 0;   // alpha/r (or alpha/sqrt(r) with rsLoRA)
};

// y: [M, out]; bias may be empty; xa [M, r] receives x·Aᵀ for the backward (empty without LoRA).
void linear_forward(const View& y, const View& xa, const View& x, const View& w, const View& bias,
                    const LoraBranch& lora);

struct LinearGrads {
  View dx;                  // [M, in]; empty: not needed
  bool accumulate_dx = false;
  View da, db;              // LoRA grads, accumulated; empty: not needed
  View dw, dbias;           // base weight grads, accumulated (full-parameter training only)
};

void linear_backward(const LinearGrads& grads, const View& dy, const View& x, const View& xa,
                     const View& w, const LoraBranch& lora);

// DP-SGD: the squared L2 norm of each example's LoRA gradient (dA and dB together) without
// materialising per-example gradients ("ghost norms", Goodfellow 2015; Li et al. 2022). Rows
// [b·T, (b+1)·T) of dy, x and xa belong to example b, for B = sq_norms.numel() examples. With
// dxa = scale·dy·B:  ‖dB_b‖² = scale²·Σ_{t,t'} (dy_t·dy_t')(xa_t·xa_t')  and
// ‖dA_b‖² = Σ_{t,t'} (dxa_t·dxa_t')(x_t·x_t'); both are added to sq_norms[b] (f64).
void lora_per_example_sq_norms(const View& sq_norms, const View& dy, const View& x, const View& xa,
                               const LoraBranch& lora);

}  // namespace fe::kernels
