// CPU twin of kernels/linear.h's lora_per_example_sq_norms (CUDA twin: kernels/cuda/ghost_norms.cu):
// each example's two T×T Gram matrices, summed in double.
#include <vector>

#include "kernels/cpu/common.h"
#include "kernels/twins.h"

namespace fe::kernels::cpu {
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

void lora_per_example_sq_norms(const LoraSqNormsArgs& a) {
  const LoraBranch& lora = a.lora;
  const int64_t rank = lora.a.shape[0], out = lora.b.shape[0], in = lora.a.shape[1];
  const int64_t examples = a.sq_norms.numel(), rows = a.dy.shape[0] / examples;
  with_float_type(a.dy.dtype, [&]<class T>(T) {
    std::vector<T> dxa_storage(a.dy.shape[0] * rank);
    const View dxa{dxa_storage.data(), a.dy.dtype, Shape{a.dy.shape[0], rank}, Device::cpu};
    gemm(GemmArgs{dxa, a.dy, false, lora.b, false, lora.scale, 0.0});
#pragma omp parallel for schedule(static) if (examples * rows * rows * (out + in) > kParallelWork)
    for (int64_t b = 0; b < examples; ++b) {
      const int64_t first = b * rows;
      const double db = lora.scale * lora.scale *
                        ghost_sq_norm(a.dy.as<T>() + first * out, out, a.xa.as<T>() + first * rank, rank, rows);
      const double da = ghost_sq_norm(dxa_storage.data() + first * rank, rank, a.x.as<T>() + first * in, in, rows);
      a.sq_norms.as<double>()[b] += db + da;
    }
  });
}

}  // namespace fe::kernels::cpu
