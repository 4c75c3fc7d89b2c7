// The counter-based random stream shared by every sampling backend (mirror of zoomkern/_rng.py).
//
// Every uniform is a pure function of (seed0, seed1, row, col, stream), so a sample never depends on
// the thread count or launch grid, and the C++, CUDA, Triton and reference backends agree bit for bit
// on the uniforms. All arithmetic is uint32 (wraps mod 2^32 like the Python masking).
#pragma once

#include <cstdint>

// The same header is compiled by g++ (CPU ops) and nvcc (CUDA ops).
#if defined(__CUDACC__) || defined(__HIPCC__)
#define ZK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define ZK_HOST_DEVICE inline
#endif

namespace zoomkern {

constexpr uint32_t kGolden = 0x9E3779B9u;
constexpr uint32_t kStreamGumbel = 0;
constexpr uint32_t kStreamDraw = 1;
constexpr uint32_t kStreamDrawLo = 2;

// lowbias32 (Chris Wellons): good avalanche for two multiplies.
ZK_HOST_DEVICE uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// row/col are taken mod 2^32, exactly as the Python side masks its int64 counters.
ZK_HOST_DEVICE uint32_t counter_hash(uint32_t seed0, uint32_t seed1, uint32_t row, uint32_t col,
                                     uint32_t stream) {
  uint32_t h = hash32(col + stream * kGolden);
  h = hash32(row + h);
  h = hash32(seed1 + h);
  return hash32(seed0 + h);
}

// Gumbel stream: v = (h + 0.5) * 2^-32. In float64 that is exact. In float32 it is rounded once to nearest:
// hi = (h >> 8) * 2^-24 and lo = ((h & 255) + 0.5) * 2^-32 are both exact, so hi + lo is the correctly
// rounded exact value (the reference rounds the exact float64 the same way); then clamped below 1.
constexpr float kV32Max = 0.99999994039535522461f;  // 1 - 2^-24

ZK_HOST_DEVICE float gumbel_v_f32(uint32_t h) {
  const float hi = static_cast<float>(h >> 8) * 5.9604644775390625e-08f;     // 2^-24
  const float lo = (static_cast<float>(h & 255u) + 0.5f) * 2.3283064365386963e-10f;  // 2^-32
  const float v = hi + lo;
  return v < kV32Max ? v : kV32Max;
}

ZK_HOST_DEVICE double gumbel_v_f64(uint32_t h) { return (static_cast<double>(h) + 0.5) * 2.3283064365386963e-10; }

template <typename T>
ZK_HOST_DEVICE T gumbel_v(uint32_t h);
template <>
ZK_HOST_DEVICE float gumbel_v<float>(uint32_t h) {
  return gumbel_v_f32(h);
}
template <>
ZK_HOST_DEVICE double gumbel_v<double>(uint32_t h) {
  return gumbel_v_f64(h);
}

// Draw stream: 26 bits from each of two hashes (streams 1 and 2) -> u = (x + 0.5) * 2^-52, exact in float64.
ZK_HOST_DEVICE double draw_u(uint32_t seed0, uint32_t seed1, uint32_t row, uint32_t draw) {
  const uint64_t hi = counter_hash(seed0, seed1, row, draw, kStreamDraw) >> 6;
  const uint64_t lo = counter_hash(seed0, seed1, row, draw, kStreamDrawLo) >> 6;
  return (static_cast<double>((hi << 26) | lo) + 0.5) * 2.220446049250313e-16;  // 2^-52
}

}  // namespace zoomkern
