// kernels/elementwise.h — small whole-tensor ops: copy with dtype conversion, fill, add, scale.
//
// Every op runs where its views live (all on the CPU or all on the GPU); only `copy` crosses
// devices. On the GPU, axpy, scale and sum_squares take f32 or bf16 (fp32 math); convert and fill
// take every dtype.
#pragma once
#include "kernels/view.h"

namespace fe::kernels {

// dst = src, byte for byte: same dtype and element count, any devices (host ↔ GPU copies). Returns
// once dst can be read on the host.
void copy(const View& dst, const View& src);
// dst = src converted to dst's dtype (any float dtype to any float dtype; i32 <-> i64).
void convert(const View& dst, const View& src);
void fill(const View& dst, double value);
// y += alpha·x (same shape).
void axpy(const View& y, const View& x, double alpha);
void scale(const View& y, double alpha);
// Σ x² over all elements, accumulated in double (on the GPU: fp32 within a pack, double beyond, in
// a fixed order, so repeated calls give the same bits).
double sum_squares(const View& x);

}  // namespace fe::kernels
