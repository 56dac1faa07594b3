// kernels/adamw.h — AdamW (decoupled weight decay, bias-corrected moments) as torch.optim.AdamW.
#pragma once
#include <span>

#include "kernels/view.h"

namespace fe::kernels {

struct AdamWHyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// One step, number `step` (1-based), updating param, m and v in place; all four share a shape.
void adamw_step(const View& param, const View& grad, const View& m, const View& v,
                const AdamWHyper& h, int64_t step);
// adamw_step for every i of four equally long lists; on the GPU one launch updates them all (the
// tensors of a list share one float dtype).
void adamw_step_all(std::span<const View> params, std::span<const View> grads,
                    std::span<const View> m, std::span<const View> v, const AdamWHyper& h,
                    int64_t step);

}  // namespace fe::kernels
