// The per-thread body of the CUDA gather, written once for nvcc and g++.
//
// gather_cuda.cu runs it with one warp per output patch row (lanes stride over the row's columns, so
// neighbouring lanes read neighbouring pixels: coalesced for CHW rows). gather_emulate.cpp drives the
// same function over the same (warp, lane) grid on the CPU, so the index arithmetic is tested without a GPU.
// Conversion and normalisation follow the reference op by op: value.to(out), - mean.to(out), / std.to(out).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/TypeCast.h>

#include <cstdint>

#include "../common/rng.h"  // ZK_HOST_DEVICE

namespace zoomkern {

template <typename in_t, typename out_t>
struct GatherParams {
  const in_t* img;
  const int64_t* offs;  // (B, k, 2) contiguous (y, x)
  out_t* out;           // (B, k, C, ph, pw) contiguous
  const out_t* mean;    // (C,) already rounded to out_t, or nullptr
  const out_t* std_;
  int64_t B, C, H, W, k, ph, pw;
  int64_t sb, sc, sh, sw;  // image strides in logical (B, C, H, W) order
};

template <typename T>
ZK_HOST_DEVICE float to_opmath(T v) {
  return static_cast<float>(v);
}
ZK_HOST_DEVICE double to_opmath(double v) { return v; }

template <typename in_t, typename out_t>
ZK_HOST_DEVICE void gather_patch_row(const GatherParams<in_t, out_t>& p, int64_t row, int lane, int nlanes) {
  const int64_t r = row % p.ph;
  const int64_t bc = row / p.ph;  // (b * k + i) * C + c
  const int64_t c = bc % p.C;
  const int64_t bi = bc / p.C;
  const int64_t b = bi / p.k;
  // Clamping keeps which pixels are inside unchanged and rules out int64 overflow for absurd offsets.
  int64_t oy = p.offs[2 * bi], ox = p.offs[2 * bi + 1];
  oy = oy < -p.ph ? -p.ph : (oy > p.H ? p.H : oy);
  ox = ox < -p.pw ? -p.pw : (ox > p.W ? p.W : ox);
  const int64_t y = oy + r;
  const bool row_in = y >= 0 && y < p.H;
  const in_t* src = p.img + b * p.sb + c * p.sc + (row_in ? y : 0) * p.sh;
  out_t* dst = p.out + row * p.pw;
  for (int64_t t = lane; t < p.pw; t += nlanes) {
    const int64_t x = ox + t;
    out_t v = (row_in && x >= 0 && x < p.W) ? c10::convert<out_t>(src[x * p.sw]) : out_t(0);
    if (p.mean) v = static_cast<out_t>(to_opmath(v) - to_opmath(p.mean[c]));
    if (p.std_) v = static_cast<out_t>(to_opmath(v) / to_opmath(p.std_[c]));
    dst[t] = v;
  }
}

}  // namespace zoomkern
