// kernels/elementwise.h — small whole-tensor ops: copy with dtype conversion, fill, add, scale.
#pragma once
#include "kernels/view.h"

namespace fe::kernels {

// dst = src converted to dst's dtype (any float dtype to any float dtype; i32 <-> i64).
void convert(const View& dst, const View& src);
void fill(const View& dst, double value);
// y += alpha·x (same shape).
void axpy(const View& y, const View& x, double alpha);
void scale(const View& y, double alpha);
// Σ x² over all elements, accumulated in double.
double sum_squares(const View& x);

}  // namespace fe::kernels
