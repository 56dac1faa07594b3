// The public cross-entropy: argument checks, then the CPU or CUDA twin (kernels/twins.h), which
// checks the targets where they live.
#include "kernels/cross_entropy.h"

#include <string>

#include "kernels/dispatch.h"
#include "kernels/twins.h"

namespace fe::kernels {

CrossEntropyResult cross_entropy(const View& dlogits, const View& logits, const View& targets, double grad_scale) {
  detail::OpCheck check("cross_entropy", {{"dlogits", &dlogits}, {"logits", &logits}, {"targets", &targets}});
  check.require(logits.shape.rank() == 2 && targets.numel() == logits.shape[0] && targets.dtype == DType::i32 &&
                    (dlogits.empty() || dlogits.shape == logits.shape),
                "expects logits [N, V], targets i32 [N], dlogits like logits");
  const CrossEntropyArgs args{dlogits, logits, targets, grad_scale};
  CrossEntropySums sums;
  if (detail::on_gpu_float(check, logits)) {
    if constexpr (detail::kHaveCuda) sums = cuda::cross_entropy(args);
  } else {
    detail::require_cpu_float(check, logits);  // before the targets are read on the host
    sums = cpu::cross_entropy(args);
  }
  if (sums.bad_row >= 0)
    check.fail("target " + std::to_string(sums.bad_target) + " at row " + std::to_string(sums.bad_row) +
               " is outside the vocabulary [0, " + std::to_string(logits.shape[1]) + ")");
  return CrossEntropyResult{sums.loss_sum, sums.count};
}

}  // namespace fe::kernels
