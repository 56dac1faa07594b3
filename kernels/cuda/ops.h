// kernels/cuda/ops.h — the CUDA twins of the public ops in kernels/*.h.
//
// A public op (kernels/cpu/<family>.cpp) checks its arguments, then calls its twin here when its
// views are on the GPU (see kernels/cpu/dispatch.h). The twins trust those checks: shapes agree,
// every view is on the GPU, the floating views share one dtype, f32 or bf16 unless said otherwise.
// Declared in every build, defined only when CUDA is on (kernels/cuda/<family>.cu, one file per
// family). Kernels run on the default stream; `copy` and the reductions returning a value wait for
// it. Plain C++17 (nvcc compiles the .cu files as C++17), so lists are pointer and count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/view.h"

namespace fe::kernels::cuda {

// elementwise.cu
void copy(const View& dst, const View& src);                // any devices, same dtype
void convert(const View& dst, const View& src);             // dtypes differ; as the CPU converts
void fill(const View& dst, uint64_t element_bits);          // the value's bits in dst's dtype
void axpy(const View& y, const View& x, double alpha);

// clip.cu (sum_squares and scale serve a single view as a list of one)
double sum_squares(const View* xs, size_t count);
void scale(const View* xs, size_t count, double alpha);
void add_gaussian_noise(const View& x, double stddev, uint64_t seed, uint64_t offset);

// adamw.cu: AdamWHyper with the step's bias corrections 1 − βᵗ folded in.
struct AdamWStep {
  double lr, beta1, beta2, eps, weight_decay, bias1, bias2;
};
void adamw_step(const View* params, const View* grads, const View* m, const View* v, size_t count,
                const AdamWStep& s);

// rmsnorm.cu (rstd f32 or x's dtype)
void rmsnorm_forward(const View& y, const View& rstd, const View& x, const View& w, double eps);
void rmsnorm_backward(const View& dx, const View& dw, const View& dy, const View& x, const View& w,
                      const View& rstd, bool accumulate);

// rope.cu (positions i32, inv_freq f64, cos and sin f32 or bf16)
void rope_tables(const View& cos, const View& sin, const View& positions, const View& inv_freq);
void rope_apply(const View& x, const View& cos, const View& sin, bool inverse);

// swiglu.cu
void swiglu_forward(const View& out, const View& gate, const View& up);
void swiglu_backward(const View& dgate, const View& dup, const View& dout, const View& gate,
                     const View& up);

// embedding.cu (ids already checked against the vocabulary)
void embedding_forward(const View& out, const View& ids, const View& table);
void embedding_backward(const View& dtable, const View& ids, const View& dout);

// linear.cu (cuBLASLt, fp32 compute). 2-D row-major views. gemm: a and b share f32 or bf16, c is
// their dtype or f32. linear_*: x, y, xa, w, bias, lora_a/b, dx, dy share one dtype; da, db, dw,
// dbias are that dtype or f32. Empty views are absent (no LoRA, no bias, gradient not wanted).
void gemm(const View& c, const View& a, bool transpose_a, const View& b, bool transpose_b, double alpha,
          double beta);
void linear_forward(const View& y, const View& xa, const View& x, const View& w, const View& bias,
                    const View& lora_a, const View& lora_b, double lora_scale);
void linear_backward(const View& dx, bool accumulate_dx, const View& da, const View& db, const View& dw,
                     const View& dbias, const View& dy, const View& x, const View& xa, const View& w,
                     const View& lora_a, const View& lora_b, double lora_scale);

// attention.cu: causal flash attention, GQA, head_dim 64 or 128 (else Error), window 0 (full causal)
// or W > 0 (kernels/attention.h). q, k, v, out and the gradients share one dtype; lse f32
// (recommended) or that dtype. No float atomics.
void attention_forward(const View& out, const View& lse, const View& q, const View& k, const View& v, int64_t window);
void attention_backward(const View& dq, const View& dk, const View& dv, const View& dout, const View& q, const View& k,
                        const View& v, const View& out, const View& lse, int64_t window);

// cross_entropy.cu: logits [N, V], dlogits like logits or empty (may alias logits), targets i32
// [N], checked on the GPU: bad_row ≥ 0 names the first row whose target is neither kIgnoreIndex
// nor in [0, V), and then nothing was written and the sums are 0 (the public op raises).
struct CrossEntropySums {
  double loss_sum = 0;
  int64_t count = 0;
  int64_t bad_row = -1;
  int32_t bad_target = 0;
};
CrossEntropySums cross_entropy(const View& dlogits, const View& logits, const View& targets, double grad_scale);

// ghost_norms.cu: lora_per_example_sq_norms with dy [M, out], x [M, in], xa [M, r] sharing f32 or
// bf16, lora_b [out, r] f32 or bf16; sq_norms f64 [B] on the GPU or in host memory (then the call
// waits for the GPU and adds on the host).
void lora_per_example_sq_norms(const View& sq_norms, const View& dy, const View& x, const View& xa,
                               const View& lora_b, double scale);

}  // namespace fe::kernels::cuda
