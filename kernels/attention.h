// kernels/attention.h — causal scaled-dot-product attention with grouped-query (GQA) heads and an
// optional sliding window.
//
// q: [B, Tq, H, hd]; k, v: [B, Tk, Hkv, hd] with H a multiple of Hkv (query head h reads kv head
// h / (H/Hkv), HF's repeat_kv) and Tq ≤ Tk: the queries are the last Tq positions of the key
// sequence (Tq < Tk when decoding against a KV cache), so query i sits at position
// p = Tk − Tq + i. It attends to keys 0 … p, or with window W > 0 to the W most recent of them,
// max(0, p − W + 1) … p (HF's sliding_window: key j is visible iff p − W < j ≤ p); window 0 is
// plain causal attention. Scores are scaled by 1/sqrt(hd). The forward keeps only the
// log-sum-exp of each score row; the backward recomputes the probabilities from it, so no [T, T]
// matrix outlives one row.
#pragma once
#include <cstdint>

#include "kernels/view.h"

namespace fe::kernels {

// out: [B, Tq, H, hd]; lse: [B, H, Tq]. window ≥ 0.
void attention_forward(const View& out, const View& lse, const View& q, const View& k, const View& v, int64_t window);
// dq, dk, dv are written (not accumulated). Training only: requires Tq = Tk. window: the forward's.
void attention_backward(const View& dq, const View& dk, const View& dv, const View& dout, const View& q, const View& k,
                        const View& v, const View& out, const View& lse, int64_t window);

}  // namespace fe::kernels
