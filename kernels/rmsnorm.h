// kernels/rmsnorm.h — RMSNorm as in HF Llama: y = w * x / sqrt(mean(x²) + eps), per row.
#pragma once
#include "kernels/view.h"

namespace fe::kernels {

// x, y: [N, D]; w: [D]; rstd: [N] receives 1/sqrt(mean(x²) + eps) for the backward: in x's dtype,
// or on the GPU also f32 (what a bf16 model keeps, as the backward then uses the unrounded value).
void rmsnorm_forward(const View& y, const View& rstd, const View& x, const View& w, double eps);
// dx = ∂L/∂x given dy; added to dx when accumulate (a residual stream's gradient), else written.
// dw += Σ_n dy ⊙ x·rstd when dw is not empty (frozen weights pass an empty View).
void rmsnorm_backward(const View& dx, const View& dw, const View& dy, const View& x, const View& w,
                      const View& rstd, bool accumulate);

}  // namespace fe::kernels
