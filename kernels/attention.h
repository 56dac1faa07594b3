// kernels/attention.h — causal scaled-dot-product attention with grouped-query (GQA) heads.
//
// q: [B, Tq, H, hd]; k, v: [B, Tk, Hkv, hd] with H a multiple of Hkv (query head h reads kv head
// h / (H/Hkv), HF's repeat_kv) and Tq ≤ Tk: the queries are the last Tq positions of the key
// sequence (Tq < Tk when decoding against a KV cache), so query i attends to keys
// 0 … Tk − Tq + i. Scores are scaled by 1/sqrt(hd). The forward
// keeps only the log-sum-exp of each score row; the backward recomputes the probabilities from it,
// so no [T, T] matrix outlives one row.
#pragma once
#include "kernels/view.h"

namespace fe::kernels {

// out: [B, Tq, H, hd]; lse: [B, H, Tq].
void attention_forward(const View& out, const View& lse, const View& q, const View& k, const View& v);
// dq, dk, dv are written (not accumulated). Training only: requires Tq = Tk.
void attention_backward(const View& dq, const View& dk, const View& dv, const View& dout,
                        const View& q, const View& k, const View& v, const View& out,
                        const View& lse);

}  // namespace fe::kernels
