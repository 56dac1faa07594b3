// kernels/clip.h — the differential-privacy building blocks: clipping a list of tensors by their
// global L2 norm, and Gaussian noise that is reproducible from (seed, offset).
//
// On the GPU each list op is one launch over the whole list (a device table of pointers and sizes),
// and the views of a list share one float dtype (f32 or bf16). On the CPU they loop over the list.
//
// Noise: element i of x receives stddev·z[offset + i], where z is the stream of standard normals
// of `seed`: Box–Muller on Philox-4x32-10 blocks (kernels/philox.h), block c giving z[4c..4c+3].
// The CPU and GPU compute the same stream (equal up to float rounding of log/sin/cos), so noise
// drawn on either is the same; consecutive tensors take consecutive offsets (offset += numel) to
// draw disjoint parts of one stream.
#pragma once
#include <cstdint>
#include <span>

#include "kernels/view.h"

namespace fe::kernels {

// sqrt(Σ over the list of Σ x²), accumulated in double and in a fixed order.
double global_norm(std::span<const View> xs);
// x *= alpha for every x of the list.
void scale_all(std::span<const View> xs, double alpha);
// x += stddev·z[offset + i]; requires offset + x.numel() < 2^64.
void add_gaussian_noise(const View& x, double stddev, uint64_t seed, uint64_t offset);

}  // namespace fe::kernels
