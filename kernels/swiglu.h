// kernels/swiglu.h — the Llama MLP gate: out = silu(gate) ⊙ up, silu(g) = g·sigmoid(g).
#pragma once
#include "kernels/view.h"

namespace fe::kernels {

// gate, up, out: same shape.
void swiglu_forward(const View& out, const View& gate, const View& up);
// dgate, dup written from dout.
void swiglu_backward(const View& dgate, const View& dup, const View& dout, const View& gate,
                     const View& up);

}  // namespace fe::kernels
