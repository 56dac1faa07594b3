// CPU twin of kernels/cross_entropy.h (CUDA twin: kernels/cuda/cross_entropy.cu): a row at a time,
// the log-sum-exp in double; the rows' losses are summed serially so the result does not depend
// on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/common.h"
#include "kernels/twins.h"

namespace fe::kernels::cpu {

CrossEntropySums cross_entropy(const CrossEntropyArgs& a) {
  const int64_t rows = a.logits.shape[0], vocab = a.logits.shape[1];
  const int32_t* target = a.targets.as<int32_t>();
  CrossEntropySums sums;
  for (int64_t n = 0; n < rows; ++n)  // before anything is written
    if (target[n] != kIgnoreIndex && (target[n] < 0 || target[n] >= vocab)) {
      sums.bad_row = n;
      sums.bad_target = target[n];
      return sums;
    }
  std::vector<double> row_loss(rows, 0.0);
  with_float_type(a.logits.dtype, [&]<class T>(T) {
#pragma omp parallel for schedule(static) if (rows * vocab > kParallelWork)
    for (int64_t n = 0; n < rows; ++n) {
      const T* z = a.logits.as<T>() + n * vocab;
      T* dz = a.dlogits.empty() ? nullptr : a.dlogits.as<T>() + n * vocab;
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
        dz[i] = static_cast<T>(a.grad_scale * (std::exp(z[i] - lse) - (i == target[n] ? 1.0 : 0.0)));
    }
  });
  for (int64_t n = 0; n < rows; ++n) {
    sums.loss_sum += row_loss[n];
    sums.count += target[n] != kIgnoreIndex;
  }
  return sums;
}

}  // namespace fe::kernels::cpu
