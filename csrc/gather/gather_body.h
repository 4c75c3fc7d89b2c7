// The per-thread body of the CUDA gather, written once for nvcc and g++.
//
// gather_cuda.cu runs it with one warp per output row. Two bodies:
//  * gather_patch_row: one channel row of a patch; lanes stride over its columns, so neighbouring lanes
//    read neighbouring pixels (coalesced for CHW rows);
//  * staged_load/staged_store (HWC images with dense pixels): one patch row, all channels. The warp first
//    copies the row's bytes into shared memory with 16-byte loads (the unaligned head and tail byte by
//    byte), then de-interleaves from shared memory into the C output planes with coalesced stores. Over
//    UVA from pinned host memory this turns C strided passes of small requests into one pass of large ones.
// gather_emulate.cpp drives the same functions over the same (warp, lane) grid on the CPU (every lane's
// load before any lane's store, as the __syncwarp between them orders it), so the index and alignment
// arithmetic is tested without a GPU.
// Conversion and normalisation follow the reference op by op: value.to(out), - mean.to(out), / std.to(out).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/TypeCast.h>

#include <cstdint>
#include <cstring>

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

// ---------------------------------------------------------------- HWC rows staged through shared memory

constexpr int kStageBytes = 2048;  // bytes of one patch row staged per warp and tile (+16 for alignment)

template <typename in_t, typename out_t>
ZK_HOST_DEVICE bool use_staging(const GatherParams<in_t, out_t>& p) {
  return p.C > 1 && p.sc == 1 && p.sw == p.C && p.C * static_cast<int64_t>(sizeof(in_t)) <= kStageBytes;
}

// One patch row (b, i, r), all channels; inside columns [t0, t1) of the patch, 0 <= t0 <= t1 <= pw.
struct StagedRow {
  int64_t bi, r, t0, t1;
  const unsigned char* src;  // byte address of pixel (y, ox + t0), channel 0 (valid only when t1 > t0)
};

template <typename in_t, typename out_t>
ZK_HOST_DEVICE int64_t staged_px_per_tile(const GatherParams<in_t, out_t>& p) {
  return kStageBytes / (p.C * static_cast<int64_t>(sizeof(in_t)));
}

template <typename in_t, typename out_t>
ZK_HOST_DEVICE StagedRow staged_row(const GatherParams<in_t, out_t>& p, int64_t row) {
  StagedRow g;
  g.r = row % p.ph;
  g.bi = row / p.ph;
  const int64_t b = g.bi / p.k;
  int64_t oy = p.offs[2 * g.bi], ox = p.offs[2 * g.bi + 1];
  oy = oy < -p.ph ? -p.ph : (oy > p.H ? p.H : oy);
  ox = ox < -p.pw ? -p.pw : (ox > p.W ? p.W : ox);
  const int64_t y = oy + g.r;
  const bool row_in = y >= 0 && y < p.H;
  int64_t t0 = -ox < 0 ? 0 : -ox;
  t0 = t0 > p.pw ? p.pw : t0;
  int64_t t1 = p.W - ox < p.pw ? p.W - ox : p.pw;
  t1 = (!row_in || t1 < t0) ? t0 : t1;
  g.t0 = t0;
  g.t1 = t1;
  g.src = reinterpret_cast<const unsigned char*>(row_in && t1 > t0 ? p.img + b * p.sb + y * p.sh + (ox + t0) * p.C
                                                                   : p.img);
  return g;
}

struct alignas(16) Bytes16 {
  uint32_t v[4];
};

// Typed reads of raw bytes: plain vector/scalar loads on the device, memcpy on the host (no aliasing UB).
ZK_HOST_DEVICE void copy16(unsigned char* dst, uintptr_t src) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<Bytes16*>(dst) = *reinterpret_cast<const Bytes16*>(src);  // one 128-bit load and store
#else
  std::memcpy(dst, reinterpret_cast<const void*>(src), 16);
#endif
}

template <typename T>
ZK_HOST_DEVICE T load_as(const unsigned char* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const T*>(p);
#else
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
#endif
}

// Tile `tile` covers patch columns [tile * ppt, (tile + 1) * ppt). Its inside bytes [s0, s1) land in smem
// at s0 - (s0 & ~15): smem keeps the source's alignment, so the 16-byte loads store to aligned slots.
template <typename in_t, typename out_t>
ZK_HOST_DEVICE void staged_load(const GatherParams<in_t, out_t>& p, const StagedRow& g, int64_t tile, int lane,
                                int nlanes, unsigned char* smem) {
  const int64_t ppt = staged_px_per_tile(p);
  const int64_t px = p.C * static_cast<int64_t>(sizeof(in_t));
  const int64_t v0 = tile * ppt > g.t0 ? tile * ppt : g.t0;
  const int64_t v1 = (tile + 1) * ppt < g.t1 ? (tile + 1) * ppt : g.t1;
  if (v1 <= v0) return;
  const uintptr_t s0 = reinterpret_cast<uintptr_t>(g.src) + (v0 - g.t0) * px;
  const uintptr_t s1 = s0 + (v1 - v0) * px;
  const uintptr_t base = s0 & ~uintptr_t(15);
  uintptr_t a0 = (s0 + 15) & ~uintptr_t(15);
  a0 = a0 < s1 ? a0 : s1;
  uintptr_t a1 = s1 & ~uintptr_t(15);
  a1 = a1 > a0 ? a1 : a0;
  for (uintptr_t i = s0 + lane; i < a0; i += nlanes)
    smem[i - base] = *reinterpret_cast<const unsigned char*>(i);
  for (uintptr_t i = a0 + 16 * lane; i < a1; i += 16 * static_cast<uintptr_t>(nlanes))
    copy16(smem + (i - base), i);
  for (uintptr_t i = a1 + lane; i < s1; i += nlanes)
    smem[i - base] = *reinterpret_cast<const unsigned char*>(i);
}

template <typename in_t, typename out_t>
ZK_HOST_DEVICE void staged_store(const GatherParams<in_t, out_t>& p, const StagedRow& g, int64_t tile, int lane,
                                 int nlanes, const unsigned char* smem) {
  const int64_t ppt = staged_px_per_tile(p);
  const int64_t u0 = tile * ppt;
  const int64_t u1 = u0 + ppt < p.pw ? u0 + ppt : p.pw;
  const int64_t v0 = u0 > g.t0 ? u0 : g.t0;  // first inside column of the tile (if any)
  const uintptr_t s0 = reinterpret_cast<uintptr_t>(g.src) + (v0 - g.t0) * p.C * sizeof(in_t);
  const unsigned char* px0 = smem + (s0 & 15);                         // pixel v0, channel 0
  out_t* dst = p.out + (g.bi * p.C * p.ph + g.r) * p.pw;             // channel c at dst + c * ph * pw
  for (int64_t t = u0 + lane; t < u1; t += nlanes) {
    const bool in = t >= g.t0 && t < g.t1;
    for (int64_t c = 0; c < p.C; ++c) {
      out_t v = in ? c10::convert<out_t>(load_as<in_t>(px0 + ((t - v0) * p.C + c) * sizeof(in_t))) : out_t(0);
      if (p.mean) v = static_cast<out_t>(to_opmath(v) - to_opmath(p.mean[c]));
      if (p.std_) v = static_cast<out_t>(to_opmath(v) / to_opmath(p.std_[c]));
      dst[c * p.ph * p.pw + t] = v;
    }
  }
}

}  // namespace zoomkern
