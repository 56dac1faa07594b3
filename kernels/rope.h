// kernels/rope.h — rotary position embedding, HF "rotate half" layout.
//
// For a head vector x of size hd and i < hd/2:
//   y[i]      = x[i]·cos[i] − x[i+hd/2]·sin[i]
//   y[i+hd/2] = x[i+hd/2]·cos[i] + x[i]·sin[i]
// where cos/sin are per token (position·inv_freq[i]). The backward is the inverse rotation.
#pragma once
#include "kernels/view.h"

namespace fe::kernels {

// cos, sin: [N, hd/2] from positions (i32 [N]) and inv_freq (f64 [hd/2]), in the dtype of cos.
void rope_tables(const View& cos, const View& sin, const View& positions, const View& inv_freq);
// x: [N, H, hd], rotated in place; inverse rotates by −angle (the backward of the forward).
void rope_apply(const View& x, const View& cos, const View& sin, bool inverse);

}  // namespace fe::kernels
