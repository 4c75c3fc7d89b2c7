// CPU patch gather, built once per CPU capability (see csrc/common/cpu_capability.h): the generic build
// and, on x86-64, an AVX2 build in which the plain contiguous loops below become vector code.
//
// Work is one output row (b, patch, row) for all channels; a thread takes a contiguous block of rows and
// walks them patch by patch, so the patch geometry (clamped offsets, inside columns) is computed once per
// patch, not per row, and nothing is allocated per row. Rows are read once, in the order they lie:
//   * a channel row with unit stride (CHW) is a memcpy when nothing is converted, else one contiguous
//     convert(-normalise) loop;
//   * an interleaved row (HWC with dense pixels, C = 2..4) is read once and de-interleaved into the C
//     output planes (pshufb for 3-channel bytes in the AVX2 build), converting in tiles when asked;
//   * any other strides: a strided loop per channel (same results, slower).
// Software prefetch asks for the rows a few ahead, across patch ends: patch rows of a huge image lie a whole
// image row apart, every one on a new page, so the hardware prefetchers do not follow them.
// Conversion and normalisation follow the reference op by op (value.to(out) - mean.to(out), then
// / std.to(out), each rounded to out_t); vector sub/div round like scalar ones, so results are bit-exact.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/TypeCast.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__SSSE3__)
#include <immintrin.h>
#endif

#include "../common/dispatch.h"
#include "gather_cpu_vec.h"

namespace zoomkern {
namespace CPU_CAPABILITY {
namespace {

constexpr int64_t kTile = 256;  // pixels per de-interleave tile when converting interleaved rows
// When every patch row lies on its own page (image rows >= 4 KiB apart, e.g. a 20000-pixel-wide HWC
// image), each row starts with a TLB miss whose page walk reads cold page-table lines. Software prefetches
// did not overlap those walks (~350 ns a row, one at a time); kTouch real loads issued back to back, one
// byte of each of the rows 8-16 ahead, are in the out-of-order window together, so their walks and misses
// overlap. Measured on the 20000^2x3 case: 20% less time on 1 thread, 30% on 2; on 1500-byte rows (several
// rows per page) the loads cost more than they save, so they are off there.
constexpr int64_t kTouch = 8;

struct Patch {
  int64_t b, oy, ox, t0, t1;  // columns [t0, t1) of the patch are inside the image
};

inline Patch patch_at(const GatherArgs& a, int64_t bi) {
  Patch p;
  p.b = bi / a.k;
  // Clamping keeps which pixels are inside unchanged and rules out int64 overflow for absurd offsets.
  p.oy = std::min(std::max(a.offs[2 * bi], -a.ph), a.H);
  p.ox = std::min(std::max(a.offs[2 * bi + 1], -a.pw), a.W);
  p.t0 = std::min(a.pw, std::max<int64_t>(0, -p.ox));
  p.t1 = std::max(p.t0, std::min(a.pw, a.W - p.ox));
  return p;
}

// memcpy, with the short runs of small patches (a 50-pixel byte row) inlined as two overlapping fixed-size
// moves instead of a library call per row.
inline void copy_bytes(void* __restrict d, const void* __restrict s, size_t n) {
  auto two = [&](auto tag) {  // n in [sizeof(tag), 2 * sizeof(tag)]
    constexpr size_t K = sizeof(tag);
    std::memcpy(d, s, K);
    std::memcpy(static_cast<char*>(d) + n - K, static_cast<const char*>(s) + n - K, K);
  };
  struct B8 { char c[8]; };
  struct B16 { char c[16]; };
  struct B32 { char c[32]; };
  if (n > 64) return static_cast<void>(std::memcpy(d, s, n));
  if (n >= 32) return two(B32{});
  if (n >= 16) return two(B16{});
  if (n >= 8) return two(B8{});
  for (size_t i = 0; i < n; ++i) static_cast<char*>(d)[i] = static_cast<const char*>(s)[i];
}

// d[t] = normalise(convert(s[t * stride])) for t < n; contiguous source loops vectorise.
template <typename in_t, typename out_t, bool NORM>
inline void convert_run(const in_t* __restrict s, int64_t stride, out_t* __restrict d, int64_t n, out_t m, out_t sd) {
  using op_t = at::opmath_type<out_t>;
  const op_t mv = static_cast<op_t>(m), sv = static_cast<op_t>(sd);
  auto f = [mv, sv](in_t x) {
    out_t v = c10::convert<out_t>(x);
    if constexpr (NORM) {
      v = static_cast<out_t>(static_cast<op_t>(v) - mv);
      v = static_cast<out_t>(static_cast<op_t>(v) / sv);
    }
    return v;
  };
  if (stride == 1) {
    if constexpr (std::is_same_v<in_t, out_t> && !NORM) {
      copy_bytes(d, s, sizeof(out_t) * n);
    } else {
      for (int64_t t = 0; t < n; ++t) d[t] = f(s[t]);
    }
  } else {
    for (int64_t t = 0; t < n; ++t) d[t] = f(s[t * stride]);
  }
}

// d[c][t] = s[t * C + c]: one pass over an interleaved row.
template <int C, typename T>
inline void deinterleave(const T* __restrict s, T* const* d, int64_t n) {
  int64_t t = 0;
#if defined(__SSSE3__)
  if constexpr (C == 3 && sizeof(T) == 1) {
    // 16 pixels = 48 bytes per step: each plane gathers its bytes from the three 16-byte loads.
    const __m128i r0 = _mm_setr_epi8(0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i r1 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14, -1, -1, -1, -1, -1);
    const __m128i r2 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 4, 7, 10, 13);
    const __m128i g0 = _mm_setr_epi8(1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i g1 = _mm_setr_epi8(-1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1);
    const __m128i g2 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14);
    const __m128i b0 = _mm_setr_epi8(2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i b1 = _mm_setr_epi8(-1, -1, -1, -1, -1, 1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1);
    const __m128i b2 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15);
    for (; t + 16 <= n; t += 16) {
      const auto* p = reinterpret_cast<const __m128i*>(s + 3 * t);
      const __m128i a0 = _mm_loadu_si128(p), a1 = _mm_loadu_si128(p + 1), a2 = _mm_loadu_si128(p + 2);
      auto pick = [&](__m128i m0, __m128i m1, __m128i m2) {
        return _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a0, m0), _mm_shuffle_epi8(a1, m1)),
                            _mm_shuffle_epi8(a2, m2));
      };
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d[0] + t), pick(r0, r1, r2));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d[1] + t), pick(g0, g1, g2));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d[2] + t), pick(b0, b1, b2));
    }
  }
#endif
  for (; t < n; ++t)
    for (int c = 0; c < C; ++c) d[c][t] = s[t * C + c];
}

template <typename in_t, typename out_t, bool NORM>
struct Gather {
  const GatherArgs& a;
  const in_t* img;
  out_t* out;
  const out_t* mean;  // (C,) in out_t; 0 when not given (v - 0 and v / 1 are exact, so one NORM
  const out_t* std_;  // (C,) in out_t; 1 when not given  path serves mean-only and std-only calls)
  const out_t* fill;  // (C,) what a pixel outside the image becomes
  bool interleaved;   // HWC with dense pixels: sc == 1, sw == C, C in 2..4
  int64_t prefetch_rows;
  bool touch_pages;  // rows >= 4 KiB apart: touch the rows ahead (kTouch)

  template <int C>
  void interleaved_row(const in_t* src, out_t* const* dst, int64_t n) const {
    if constexpr (std::is_same_v<in_t, out_t> && !NORM) {
      deinterleave<C>(src, dst, n);
    } else {
      in_t tmp[C][kTile];
      in_t* planes[C];
      for (int c = 0; c < C; ++c) planes[c] = tmp[c];
      for (int64_t t = 0; t < n; t += kTile) {
        const int64_t m = std::min(kTile, n - t);
        deinterleave<C>(src + t * C, planes, m);
        for (int c = 0; c < C; ++c)
          convert_run<in_t, out_t, NORM>(tmp[c], 1, dst[c] + t, m, mean[c], std_[c]);
      }
    }
  }

  void row(const Patch& p, int64_t bi, int64_t r) const {
    const int64_t C = a.C, pw = a.pw;
    out_t* dst0 = out + (bi * C * a.ph + r) * pw;  // channel c at dst0 + c * ph * pw
    const int64_t y = p.oy + r;
    if (y < 0 || y >= a.H || p.t1 <= p.t0) {
      for (int64_t c = 0; c < C; ++c) std::fill_n(dst0 + c * a.ph * pw, pw, fill[c]);
      return;
    }
    const in_t* src = img + p.b * a.sb + y * a.sh + (p.ox + p.t0) * a.sw;
    const int64_t n = p.t1 - p.t0;
    for (int64_t c = 0; c < C; ++c) {
      out_t* d = dst0 + c * a.ph * pw;
      std::fill_n(d, p.t0, fill[c]);
      std::fill_n(d + p.t1, pw - p.t1, fill[c]);
    }
    if (interleaved) {
      out_t* d[4];
      for (int64_t c = 0; c < C; ++c) d[c] = dst0 + c * a.ph * pw + p.t0;
      switch (C) {
        case 2: return interleaved_row<2>(src, d, n);
        case 3: return interleaved_row<3>(src, d, n);
        default: return interleaved_row<4>(src, d, n);
      }
    }
    for (int64_t c = 0; c < C; ++c)
      convert_run<in_t, out_t, NORM>(src + c * a.sc, a.sw, dst0 + c * a.ph * pw + p.t0, n, mean[c], std_[c]);
  }

  // Ask for the bytes of row r of the patch (rows of contiguous runs only; other strides are left alone).
  void prefetch(const Patch& p, int64_t r) const {
    const int64_t y = p.oy + r;
    if (y < 0 || y >= a.H || p.t1 <= p.t0) return;
    const in_t* src = img + p.b * a.sb + y * a.sh + (p.ox + p.t0) * a.sw;
    const int64_t n = p.t1 - p.t0;
    if (interleaved) return prefetch_bytes(src, n * a.C * sizeof(in_t));
    if (a.sw != 1) return;
    for (int64_t c = 0; c < a.C; ++c) prefetch_bytes(src + c * a.sc, n * sizeof(in_t));
  }

  // Into L2 (prefetcht2): the rows are needed 8 KiB of work later, and L1's few fill buffers would cap
  // how many rows can be on their way (measured: 1.5-2x faster than no prefetch on both gather cases).
  static void prefetch_bytes(const void* p, int64_t bytes) {
    const char* c = static_cast<const char*>(p);
    for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 1);
    __builtin_prefetch(c + bytes - 1, 0, 1);
  }

  void run() const {
    const int64_t rows = a.B * a.k * a.ph;
    // >= 32 KiB of output per task, so two threads split even one patch of a big image.
    const int64_t row_bytes = std::max<int64_t>(1, a.C * a.pw * static_cast<int64_t>(sizeof(out_t)));
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / row_bytes);
    at::parallel_for(0, rows, grain, [&](int64_t w0, int64_t w1) {
      // The prefetch cursor runs prefetch_rows ahead of the copy through the whole task, across patch
      // ends: stopping at each patch's end left the first rows of every patch cold (64 patches of 50
      // rows: 1.7x slower).
      Cursor ahead{w0 / a.ph, w0 % a.ph, patch_at(a, w0 / a.ph)};
      const int64_t w_pf = std::min(w1, w0 + prefetch_rows);
      for (int64_t w = w0; w < w_pf; ++w) ahead.prefetch_next(*this);
      Cursor cur{w0 / a.ph, w0 % a.ph, patch_at(a, w0 / a.ph)};
      // Rows a page or more apart: a third cursor loads one byte of each of the next kTouch rows, kTouch at
      // a time (see kTouch).
      Cursor touch{w0 / a.ph, w0 % a.ph, patch_at(a, w0 / a.ph)};
      int64_t w_touch = w0;
      for (int64_t w = w0; w < w1; ++w) {
        if (touch_pages && (w - w0) % kTouch == 0)
          for (const int64_t end = std::min(w1, w + 2 * kTouch); w_touch < end; ++w_touch) touch.touch_next(*this);
        if (w + prefetch_rows < w1) ahead.prefetch_next(*this);
        row(cur.p, cur.bi, cur.r);
        cur.step(a);
      }
    });
  }

  // A (patch, row) position that walks the flat row order without a division per row.
  struct Cursor {
    int64_t bi, r;
    Patch p;
    void step(const GatherArgs& a) {
      if (++r == a.ph) {
        r = 0;
        if (++bi < a.B * a.k) p = patch_at(a, bi);
      }
    }
    void prefetch_next(const Gather& g) {
      g.prefetch(p, r);
      step(g.a);
    }
    void touch_next(const Gather& g) {  // a real (volatile) load of the row's first byte
      const int64_t y = p.oy + r;
      if (y >= 0 && y < g.a.H && p.t1 > p.t0)
        (void)*reinterpret_cast<const volatile unsigned char*>(g.img + p.b * g.a.sb + y * g.a.sh +
                                                                (p.ox + p.t0) * g.a.sw);
      step(g.a);
    }
  };
};

template <typename out_t>
constexpr bool is_float_out() {
  return !std::is_integral_v<out_t>;
}

template <typename in_t, typename out_t>
void gather_typed(const GatherArgs& a) {
  using op_t = at::opmath_type<out_t>;
  // mean/std rounded to out_t first, as the reference's mean.to(out_dtype) does. Allocated once per call.
  std::vector<out_t> mean(a.C, out_t(0)), std_(a.C, out_t(1)), fill(a.C, out_t(0));
  for (int64_t c = 0; c < a.C; ++c) {
    if (a.mean) mean[c] = c10::convert<out_t>(a.mean[c]);
    if (a.std_) std_[c] = c10::convert<out_t>(a.std_[c]);
    out_t v = out_t(0);
    if (a.mean) v = static_cast<out_t>(static_cast<op_t>(v) - static_cast<op_t>(mean[c]));
    if (a.std_) v = static_cast<out_t>(static_cast<op_t>(v) / static_cast<op_t>(std_[c]));
    fill[c] = v;
  }
  const bool interleaved = a.C >= 2 && a.C <= 4 && a.sc == 1 && a.sw == a.C;
  // Prefetch about 8 KiB of rows ahead (more rows when they are short), at most 32 rows.
  const int64_t run_bytes = std::max<int64_t>(1, (interleaved ? a.C : 1) * a.pw * int64_t(sizeof(in_t)));
  const int64_t ahead = std::min<int64_t>(32, std::max<int64_t>(1, 8192 / run_bytes));
  auto go = [&](auto norm) {
    Gather<in_t, out_t, decltype(norm)::value> g{
        a, static_cast<const in_t*>(a.img), static_cast<out_t*>(a.out), mean.data(), std_.data(), fill.data(),
        interleaved, ahead, a.sh * int64_t(sizeof(in_t)) >= 4096};
    g.run();
  };
  if constexpr (is_float_out<out_t>()) {
    if (a.mean || a.std_) return go(std::true_type{});
  }
  go(std::false_type{});
}

}  // namespace

void gather_cpu_kernel(const GatherArgs& a) {
  dispatch_pixel_type(a.in_type, "image", [&](auto in_tag) {
    using in_t = typename decltype(in_tag)::type;
    dispatch_pixel_type(a.out_type, "out_dtype", [&](auto out_tag) {
      using out_t = typename decltype(out_tag)::type;
      gather_typed<in_t, out_t>(a);
    });
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace zoomkern
