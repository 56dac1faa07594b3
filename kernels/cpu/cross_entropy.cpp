#include "kernels/cross_entropy.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "kernels/cuda/ops.h"

namespace fe::kernels {

CrossEntropyResult cross_entropy(const View& dlogits, const View& logits, const View& targets,
                                 double grad_scale) {
  detail::OpCheck check("cross_entropy",
                        {{"dlogits", &dlogits}, {"logits", &logits}, {"targets", &targets}});
  check.require(logits.shape.rank() == 2 && targets.numel() == logits.shape[0] &&
                    targets.dtype == DType::i32 && (dlogits.empty() || dlogits.shape == logits.shape),
                "expects logits [N, V], targets i32 [N], dlogits like logits");
  if (cpu::on_gpu_float(check, logits)) {  // the targets are checked on the GPU
    if constexpr (cpu::kHaveCuda) {
      const cuda::CrossEntropySums sums = cuda::cross_entropy(dlogits, logits, targets, grad_scale);
      if (sums.bad_row >= 0)
        check.fail("target " + std::to_string(sums.bad_target) + " at row " + std::to_string(sums.bad_row) +
                   " is outside the vocabulary [0, " + std::to_string(logits.shape[1]) + ")");
      return CrossEntropyResult{sums.loss_sum, sums.count};
    }
  }
  cpu::require_cpu(check, logits);  // before the targets are read on the host
  const int64_t rows = logits.shape[0], vocab = logits.shape[1];
  const int32_t* target = targets.as<int32_t>();
  for (int64_t n = 0; n < rows; ++n)
    if (target[n] != kIgnoreIndex && (target[n] < 0 || target[n] >= vocab))
      check.fail("target " + std::to_string(target[n]) + " at row " + std::to_string(n) +
                 " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  std::vector<double> row_loss(rows, 0.0);
  cpu::dispatch_float(check, logits, [&]<class T>(T) {
#pragma omp parallel for schedule(static) if (rows * vocab > cpu::kParallelWork)
    for (int64_t n = 0; n < rows; ++n) {
      const T* z = logits.as<T>() + n * vocab;
      T* dz = dlogits.empty() ? nullptr : dlogits.as<T>() + n * vocab;
      if (target[n] == kIgnoreIndex) {
        if (dz) std::fill_n(dz, vocab, T(0));
        continue;
      }
      T max_logit = z[0];
      for (int64_t i = 1; i < vocab; ++i) max_logit = std::max(max_logit, z[i]);
      double sum = 0;
      for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(z[i] - max_logit));
      const double lse = max_logit + std::log(sum);
      row_loss[n] = lse - z[target[n]];
      if (!dz) continue;
      for (int64_t i = 0; i < vocab; ++i)  // may overwrite z when dz aliases it: z[i] is read first
        dz[i] = static_cast<T>(grad_scale * (std::exp(z[i] - lse) - (i == target[n] ? 1.0 : 0.0)));
    }
  });
  CrossEntropyResult result;
  for (int64_t n = 0; n < rows; ++n) {  // serial sum: the same bits whatever the thread count
    result.loss_sum += row_loss[n];
    result.count += target[n] != kIgnoreIndex;
  }
  return result;
}

}  // namespace fe::kernels
