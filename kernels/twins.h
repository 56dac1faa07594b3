// kernels/twins.h — the two backends' twins of every public op, and the arguments they take.
//
// A public op (kernels/<op>.cpp) checks its arguments, packs them into one of the structs below
// and calls its CPU twin (kernels/cpu/<op>.cpp) or its CUDA twin (kernels/cuda/<op>.cu), see
// kernels/dispatch.h. Both twins are declared from one list (kernels/twin_list.inc) so their
// signatures cannot drift apart. The twins trust the public op's checks: shapes agree, every view
// is on the twin's device (the CUDA ghost norms' sq_norms may be in host memory), floating views
// share one dtype — f32 or f64 on the CPU, f32 or bf16 on the GPU — unless a struct says
// otherwise. Empty views are absent (no LoRA, no bias, gradient not wanted).
//
// The CPU twins are the readable reference: plain loops (OpenMP above kParallelWork) or OpenBLAS,
// templates over float and double. The CUDA twins compute in fp32 on f32 or bf16 storage, run on
// the default stream, and are declared in every build but defined only when CUDA is on. Plain
// C++17 (nvcc compiles the .cu files as C++17), so lists are a pointer and a count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cross_entropy.h"
#include "kernels/linear.h"
#include "kernels/view.h"

namespace fe::kernels {

// A list of views (global_norm, scale_all, AdamW); a single view is a list of one.
struct ViewList {
  const View* views = nullptr;
  size_t count = 0;
};

// ---- elementwise.h
struct CopyArgs {
  View dst, src;  // same dtype and element count; on the GPU twin any devices
};
struct ConvertArgs {
  View dst, src;  // dtypes differ: floats to floats (through f32 to bf16/f16) or i32 <-> i64
};
struct FillArgs {
  View dst;      // any dtype
  double value;  // stored as the CPU twin converts it
};
struct AxpyArgs {
  View y, x;
  double alpha;
};

// ---- clip.h (the list forms of scale and sum_squares too)
struct ScaleAllArgs {
  ViewList xs;  // on the CPU each view has its own float dtype
  double alpha;
};
struct GaussianNoiseArgs {
  View x;
  double stddev;
  uint64_t seed, offset;
};

// ---- adamw.h: AdamWHyper with the step's bias corrections 1 − βᵗ folded in; entry i of the four
// lists is one tensor's param, grad, m, v (one shape).
struct AdamWStep {
  double lr, beta1, beta2, eps, weight_decay, bias1, bias2;
};
struct AdamWArgs {
  const View *params, *grads, *m, *v;
  size_t count;
  AdamWStep step;
};

// ---- rmsnorm.h: x, y, dx, dy [N, D]; w, dw [D]; rstd [N] in x's dtype, or f32 on the GPU.
struct RmsNormForwardArgs {
  View y, rstd, x, w;
  double eps;
};
struct RmsNormBackwardArgs {
  View dx, dw, dy, x, w, rstd;
  bool accumulate;
};

// ---- rope.h: positions i32 [N], inv_freq f64 [hd/2], cos and sin [N, hd/2], x [N, H, hd].
struct RopeTablesArgs {
  View cos, sin, positions, inv_freq;
};
struct RopeApplyArgs {
  View x, cos, sin;
  bool inverse;
};

// ---- swiglu.h: one shape.
struct SwiGluForwardArgs {
  View out, gate, up;
};
struct SwiGluBackwardArgs {
  View dgate, dup, dout, gate, up;
};

// ---- embedding.h: ids i32 [N], already checked against the vocabulary.
struct EmbeddingForwardArgs {
  View out, ids, table;
};
struct EmbeddingBackwardArgs {
  View dtable, ids, dout;
};

// ---- linear.h: 2-D row-major views ([..., in] flattened to [M, in] by the public op). gemm on
// the GPU: a and b share f32 or bf16, c is their dtype or f32. linear_* on the GPU: the gradients
// da, db, dw, dbias are dy's dtype or f32.
struct GemmArgs {
  View c, a;
  bool transpose_a;
  View b;
  bool transpose_b;
  double alpha, beta;
};
struct LinearForwardArgs {
  View y, xa, x, w, bias;
  LoraBranch lora;
};
struct LinearBackwardArgs {
  LinearGrads grads;
  View dy, x, xa, w;
  LoraBranch lora;
};
// lora_per_example_sq_norms: sq_norms f64 [B] (on the GPU twin: GPU or host memory), B·T rows of
// dy, x and xa; on the GPU lora.b is f32 or bf16 whatever the activations' dtype, lora.a unused.
struct LoraSqNormsArgs {
  View sq_norms, dy, x, xa;
  LoraBranch lora;
};

// ---- cross_entropy.h: logits [N, V], dlogits like logits or empty (may alias logits), targets
// i32 [N] checked by the twin: bad_row ≥ 0 names the first row whose target is neither
// kIgnoreIndex nor in [0, V); then nothing was written and the sums are 0 (the public op raises).
struct CrossEntropyArgs {
  View dlogits, logits, targets;
  double grad_scale;
};
struct CrossEntropySums {
  double loss_sum = 0;
  int64_t count = 0;
  int64_t bad_row = -1;
  int32_t bad_target = 0;
};

// ---- attention.h: q [B, Tq, H, hd], k, v [B, Tk, Hkv, hd], lse [B, H, Tq]. On the GPU head_dim
// is 64 or 128 (else Error), lse f32 (recommended) or the activations' dtype.
struct AttentionForwardArgs {
  View out, lse, q, k, v;
  int64_t window;
};
struct AttentionBackwardArgs {
  View dq, dk, dv, dout, q, k, v, out, lse;
  int64_t window;
};

namespace cpu {
#include "kernels/twin_list.inc"
}  // namespace cpu

namespace cuda {
#include "kernels/twin_list.inc"
}  // namespace cuda

}  // namespace fe::kernels
