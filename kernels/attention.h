// kernels/attention.h — causal scaled-dot-product attention with grouped-query (GQA) heads.
//
// q: [B, T, H, hd]; k, v: [B, T, Hkv, hd] with H a multiple of Hkv (query head h reads kv head
// h / (H/Hkv), HF's repeat_kv). Scores are scaled by 1/sqrt(hd) and masked causally. The forward
// keeps only the log-sum-exp of each score row; the backward recomputes the probabilities from it,
// so no [T, T] matrix outlives one row.
#pragma once
#include "kernels/view.h"

namespace fe::kernels {

// out: [B, T, H, hd]; lse: [B, H, T].
void attention_forward(const View& out, const View& lse, const View& q, const View& k, const View& v);
// dq, dk, dv are written (not accumulated).
void attention_backward(const View& dq, const View& dk, const View& dv, const View& dout,
                        const View& q, const View& k, const View& v, const View& out,
                        const View& lse);

}  // namespace fe::kernels
