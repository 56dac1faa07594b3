// kernels/cross_entropy.h — softmax cross-entropy with ignored targets, forward and backward fused.
#pragma once
#include "kernels/view.h"

namespace fe::kernels {

inline constexpr int32_t kIgnoreIndex = -100;

struct CrossEntropyResult {
  double loss_sum = 0;   // Σ over counted rows of −log softmax(logits)[target]
  int64_t count = 0;     // rows whose target is not kIgnoreIndex
};

// logits: [N, V]; targets: i32 [N] (kIgnoreIndex skips a row). dlogits (may alias logits) receives
// grad_scale·(softmax − onehot) for counted rows and 0 for ignored ones; pass an empty View to
// compute the loss only.
CrossEntropyResult cross_entropy(const View& dlogits, const View& logits, const View& targets,
                                 double grad_scale);

}  // namespace fe::kernels
