// kernels/philox.h — the counter-based generator behind kernels::add_gaussian_noise, shared by the
// CPU twin and the CUDA kernel so both draw the same numbers.
//
// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) maps a
// 128-bit counter and a 64-bit key to 128 random bits; stream `seed` is the key, and block c of it
// is the counter (lo32(c), hi32(c), 0, 0). Box–Muller turns a block into four standard normals.
// Header-only and C++17, so nvcc compiles it for the device too.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FE_HOST_DEVICE __host__ __device__
#else
#define FE_HOST_DEVICE
#endif

namespace fe::philox {

struct Block {
  uint32_t v[4];
};

FE_HOST_DEVICE inline uint32_t mulhi(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

// The Philox-4x32 bijection with 10 rounds (Random123's philox4x32_10).
FE_HOST_DEVICE inline Block philox4x32_10(Block ctr, uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += 0x9E3779B9u;
      key1 += 0xBB67AE85u;
    }
    const uint32_t a = ctr.v[0], c = ctr.v[2];
    ctr = Block{{mulhi(0xCD9E8D57u, c) ^ ctr.v[1] ^ key0, 0xCD9E8D57u * c,
                 mulhi(0xD2511F53u, a) ^ ctr.v[3] ^ key1, 0xD2511F53u * a}};
  }
  return ctr;
}

// sin(2πt) and cos(2πt) for t ∈ [0, 1), both within about an ulp of the true value in float.
FE_HOST_DEVICE inline void sincos_turn(float t, float* s, float* c) {
#ifdef __CUDA_ARCH__
  sincospif(2.0f * t, s, c);
#else
  const double angle = 6.283185307179586 * static_cast<double>(t);
  *s = static_cast<float>(std::sin(angle));
  *c = static_cast<float>(std::cos(angle));
#endif
}

// Two standard normals from two 32-bit draws. The radius uses u = a·2⁻³² + 2⁻³³ ∈ (0, 1] (never 0,
// so the log is finite; |z| ≤ 6.8) and the angle 24 bits of b. The products by powers of two are
// exact, so the host and the device (which may fuse them into an FMA) agree bit for bit on u and t.
FE_HOST_DEVICE inline void box_muller(uint32_t a, uint32_t b, float* z0, float* z1) {
  const float u = static_cast<float>(a) * 0x1p-32f + 0x1p-33f;
  const float t = static_cast<float>(b >> 8) * 0x1p-24f;
  const float radius = sqrtf(-2.0f * logf(u));
  float s, c;
  sincos_turn(t, &s, &c);
  *z0 = radius * c;
  *z1 = radius * s;
}

// Standard normals z[4·block .. 4·block + 3] of stream `seed`.
FE_HOST_DEVICE inline void normal4(uint64_t seed, uint64_t block, float z[4]) {
  const Block bits = philox4x32_10(
      Block{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}},
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  box_muller(bits.v[0], bits.v[1], &z[0], &z[1]);
  box_muller(bits.v[2], bits.v[3], &z[2], &z[3]);
}

}  // namespace fe::philox
