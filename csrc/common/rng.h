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

// ((h >> 9) + 0.5) * 2^-23: 23 random bits plus the half fit float32's 24-bit significand, so the value
// is exact in float32 and float64 alike (no rounding, never 1.0), and every backend agrees bit for bit.
ZK_HOST_DEVICE float uniform_f32(uint32_t h) {
  return (static_cast<float>(h >> 9) + 0.5f) * 1.1920928955078125e-07f;
}

ZK_HOST_DEVICE double uniform_f64(uint32_t h) {
  return (static_cast<double>(h >> 9) + 0.5) * 1.1920928955078125e-07;
}

template <typename T>
ZK_HOST_DEVICE T uniform(uint32_t h);
template <>
ZK_HOST_DEVICE float uniform<float>(uint32_t h) {
  return uniform_f32(h);
}
template <>
ZK_HOST_DEVICE double uniform<double>(uint32_t h) {
  return uniform_f64(h);
}

}  // namespace zoomkern
