// SIMD body of the spatial softmax (csrc/softmax/softmax_cpu.cpp checks arguments and picks the build).
// Compiled once per CPU capability (setup.py), so everything is in zoomkern::CPU_CAPABILITY.
// ZOOMKERN_BUILD_AVX512: also built for AVX-512 (16 lanes), as torch.softmax runs where the CPU has it.
//
// A row of N logits is cut into chunks of kChunk (L1-resident). Forward, per chunk, reading x once from
// memory: the chunk max m_c (first L1 pass), then e = exp(z - m_c) written to p with the chunk's
// S_c = sum e and U_c = sum e (z - m_c) accumulated in vector lanes (second pass). The row merges the
// chunk stats in chunk order (in double): M = max m_c, S = sum S_c e^(m_c - M), and then each chunk is
// rescaled by e^(m_c - M) / S. Without smoothing the entropy comes from the stats alone,
// H = log S - U / S; with smoothing it needs -sum p log p over the rescaled chunk.
// Backward: g = (gp - ge (log p + 1)) (1 - s), stashed in gx, dot = sum q g per chunk, then
// gx = q (g - dot) / T, with q the unsmoothed softmax recovered from p (0 at masked cells since p is 0).
//
// Work is split over rows when there are at least as many rows as threads, else over the chunks of one
// row at a time. Chunk results are merged in chunk order either way, so the output never depends on the
// thread count. Per-row scratch (a few numbers per chunk) lives on the stack: no allocation per row.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/SmallVector.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "softmax_cpu_vec.h"

namespace zoomkern {
namespace CPU_CAPABILITY {
namespace {

constexpr int64_t kChunk = 2048;
constexpr unsigned kStackChunks = 64;  // per-row scratch kept on the stack up to this many chunks

// One chunk's contribution: max, S = sum e^(z-m), U = sum e^(z-m)(z-m), number of valid cells.
struct ChunkStats {
  double m, S, U;
  int64_t n;
};

// exp and log of a vector, the fast variants where ATen's AVX2 layer has them: float exp_u20 (ATen's
// own polynomial, ~20 ulp ~ 1e-6 relative, what torch.softmax uses) and Sleef's 3.5-ulp log (ATen's
// Vectorized::log is the 1-ulp one, about twice the cost; the backward's log dominates its time). The
// tolerance table allows 1e-5 relative for float32. Doubles keep the 1-ulp functions.
template <typename Vec>
inline Vec fast_exp(const Vec& v) {
  return v.exp();
}
template <>
inline at::vec::Vectorized<float> fast_exp(const at::vec::Vectorized<float>& v) {
  return v.exp_u20();
}
template <typename Vec>
inline Vec fast_log(const Vec& v) {
  return v.log();
}
#if defined(CPU_CAPABILITY_AVX2)
template <>
inline at::vec::Vectorized<float> fast_log(const at::vec::Vectorized<float>& v) {
  return at::vec::Vectorized<float>(Sleef_logf8_u35avx2(v));
}
#elif defined(CPU_CAPABILITY_AVX512)
template <>
inline at::vec::Vectorized<float> fast_log(const at::vec::Vectorized<float>& v) {
  return at::vec::Vectorized<float>(Sleef_logf16_u35avx512f(v));
}
#endif

template <typename scalar_t>
struct Row {
  using Vec = at::vec::Vectorized<scalar_t>;
  static constexpr int64_t V = Vec::size();

  // V values from z, or the first `count` < V of them padded with `pad`.
  static Vec load(const scalar_t* z, int64_t count, scalar_t pad) {
    if (count == V) return Vec::loadu(z);
    return Vec::set(Vec(pad), Vec::loadu(z, count), count);
  }

  // Forward pass 1 on chunk [j0, j1): writes e = exp(z - m_c) to p, returns the chunk stats.
  // z = x / T, read straight from x (one read from memory; the chunk is then in L1 for the exp pass);
  // with a mask, masked cells are first set to -inf in an L1 buffer.
  static ChunkStats fwd_chunk(const scalar_t* x, const bool* mask, scalar_t* p, int64_t j0, int64_t j1,
                              scalar_t invT) {
    alignas(64) scalar_t zbuf[kChunk];
    const int64_t n = j1 - j0;
    const scalar_t ninf = -std::numeric_limits<scalar_t>::infinity();
    int64_t n_valid = n;
    const scalar_t* src = x + j0;
    scalar_t scale = invT;  // z = src * scale
    if (mask) {
      n_valid = 0;
      for (int64_t j = 0; j < n; ++j) {
        const bool ok = mask[j0 + j];
        n_valid += ok;
        zbuf[j] = ok ? x[j0 + j] * invT : ninf;
      }
      src = zbuf;
      scale = scalar_t(1);
    }
    // Max of the chunk, four accumulators to hide vmaxps latency. max(x) / T = max(x / T) (T > 0).
    // clamp_min is a bare vmaxps (at::vec::maximum adds NaN propagation, a third of this loop's cost);
    // a NaN logit still poisons the row through its exp in the next loop.
    Vec m0(ninf), m1(ninf), m2(ninf), m3(ninf);
    int64_t j = 0;
    for (; j + 4 * V <= n; j += 4 * V) {
      m0 = at::vec::clamp_min(Vec::loadu(src + j), m0);
      m1 = at::vec::clamp_min(Vec::loadu(src + j + V), m1);
      m2 = at::vec::clamp_min(Vec::loadu(src + j + 2 * V), m2);
      m3 = at::vec::clamp_min(Vec::loadu(src + j + 3 * V), m3);
    }
    for (; j < n; j += V) m0 = at::vec::clamp_min(load(src + j, std::min(V, n - j), ninf), m0);
    m0 = at::vec::maximum(at::vec::maximum(m0, m1), at::vec::maximum(m2, m3));
    const scalar_t mc =
        at::vec::vec_reduce_all<scalar_t>([](Vec a, Vec b) { return at::vec::maximum(a, b); }, m0) * scale;
    scalar_t* pc = p + j0;
    if (mc == ninf) {  // nothing valid and finite here: contributes exactly 0 (avoids -inf - -inf)
      std::fill(pc, pc + n, scalar_t(0));
      return {-std::numeric_limits<double>::infinity(), 0.0, 0.0, n_valid};
    }
    const Vec vscale(scale), vneg(-mc), lowest(std::numeric_limits<scalar_t>::lowest());
    Vec vS(0), vU(0);
    // max(., lowest): a -inf logit gives e = 0 and e * d = 0 instead of 0 * -inf.
    auto step = [&](Vec z) {
      const Vec d = at::vec::clamp_min(at::vec::fmadd(z, vscale, vneg), lowest);
      const Vec e = fast_exp(d);
      vS = vS + e;
      vU = at::vec::fmadd(e, d, vU);
      return e;
    };
    for (j = 0; j + V <= n; j += V) step(Vec::loadu(src + j)).store(pc + j);
    if (j < n) step(load(src + j, n - j, ninf)).store(pc + j, n - j);  // padded lanes: e = 0
    auto sum = [](Vec a, Vec b) { return a + b; };
    return {static_cast<double>(mc), static_cast<double>(at::vec::vec_reduce_all<scalar_t>(sum, vS)),
            static_cast<double>(at::vec::vec_reduce_all<scalar_t>(sum, vU)), n_valid};
  }

  // Forward pass 2 on chunk [j0, j1): p = (1-s) e f + s/n at valid cells; returns -sum p log p if s > 0.
  static double scale_chunk(scalar_t* p, const bool* mask, int64_t j0, int64_t j1, scalar_t f, double s,
                            scalar_t shift) {
    scalar_t* pc = p + j0;
    const int64_t n = j1 - j0;
    if (s == 0.0) {
      at::vec::map([f](Vec v) { return v * Vec(f); }, pc, pc, n);
      return 0.0;
    }
    const scalar_t a = static_cast<scalar_t>(1.0 - s) * f;
    at::vec::map([a, shift](Vec v) { return at::vec::fmadd(v, Vec(a), Vec(shift)); }, pc, pc, n);
    if (mask)
      for (int64_t j = 0; j < n; ++j) pc[j] = mask[j0 + j] ? pc[j] : scalar_t(0);
    Vec vh(0);
    const Vec zero(0);
    for (int64_t j = 0; j < n; j += V) {
      const int64_t c = std::min(V, n - j);
      const Vec v = c == V ? Vec::loadu(pc + j) : Vec::loadu(pc + j, c);  // padded lanes are 0
      vh = vh + Vec::blendv(zero, v * fast_log(v), v > zero);
    }
    return -static_cast<double>(
        at::vec::vec_reduce_all<scalar_t>([](Vec x, Vec y) { return x + y; }, vh));
  }

  // Backward pass 1: gx = g (stashed), returns sum q g over the chunk.
  static double bwd_chunk(const scalar_t* p, const scalar_t* gp, scalar_t ge, scalar_t* gx, int64_t j0,
                          int64_t j1, bool smooth, scalar_t shift, scalar_t one_minus_s) {
    const Vec zero(0), one(1), vge(ge), vshift(shift), vinv(scalar_t(1) / one_minus_s), voms(one_minus_s);
    const bool with_ent = ge != scalar_t(0);  // no entropy gradient: no log at all
    Vec vdot(0);
    auto step = [&](Vec pv, Vec g) {
      if (with_ent) g = g - vge * (Vec::blendv(zero, fast_log(pv), pv > zero) + one);  // 0 log 0 = 0
      Vec q = pv;
      if (smooth) {
        g = g * voms;
        q = at::vec::maximum((pv - vshift) * vinv, zero);  // masked: p = 0 -> q = 0
      }
      vdot = at::vec::fmadd(q, g, vdot);  // padded lanes: q = 0
      return g;
    };
    const int64_t n = j1 - j0;
    p += j0, gp += j0, gx += j0;
    int64_t j = 0;
    for (; j + V <= n; j += V) step(Vec::loadu(p + j), Vec::loadu(gp + j)).store(gx + j);
    if (j < n) step(Vec::loadu(p + j, n - j), Vec::loadu(gp + j, n - j)).store(gx + j, n - j);
    return static_cast<double>(at::vec::vec_reduce_all<scalar_t>([](Vec a, Vec b) { return a + b; }, vdot));
  }

  // Backward pass 2: gx = q (g - dot) / T.
  static void bwd_apply(const scalar_t* p, scalar_t* gx, int64_t j0, int64_t j1, bool smooth, scalar_t shift,
                        scalar_t one_minus_s, scalar_t dot, scalar_t invT) {
    const Vec zero(0), vshift(shift), vinv(scalar_t(1) / one_minus_s), vdot(dot), vT(invT);
    at::vec::map2(
        [&](Vec pv, Vec g) {
          const Vec q = smooth ? at::vec::maximum((pv - vshift) * vinv, zero) : pv;
          return q * (g - vdot) * vT;
        },
        gx + j0, p + j0, gx + j0, j1 - j0);
  }
};

// Row-level merge of the chunk stats, in chunk order: M, S and U relative to M.
struct Merged {
  double M = -std::numeric_limits<double>::infinity(), S = 0.0, U = 0.0;
  int64_t n = 0;
};

Merged merge(const ChunkStats* cs, int64_t nchunks) {
  Merged r;
  for (int64_t c = 0; c < nchunks; ++c) {
    r.n += cs[c].n;
    if (cs[c].S > 0.0) r.M = std::max(r.M, cs[c].m);
  }
  for (int64_t c = 0; c < nchunks; ++c) {
    if (cs[c].S == 0.0) continue;
    const double a = std::exp(cs[c].m - r.M);
    r.S += a * cs[c].S;
    r.U += a * (cs[c].U + (cs[c].m - r.M) * cs[c].S);
  }
  return r;
}

template <typename scalar_t>
void fwd_impl(const at::Tensor& x, const bool* mask, at::Tensor& p, at::Tensor& ent, double temperature,
              double s) {
  using R = Row<scalar_t>;
  const int64_t B = x.size(0), N = x.size(1), nchunks = (N + kChunk - 1) / kChunk;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* pp = p.mutable_data_ptr<scalar_t>();
  scalar_t* ep = ent.mutable_data_ptr<scalar_t>();
  const scalar_t invT = static_cast<scalar_t>(1.0 / temperature);
  // Scratch of one row: each chunk's stats after pass 1 and entropy term after pass 2. On the stack up to
  // kStackChunks chunks (rows of 131072 cells); a longer row takes one heap block per task, not per row.
  using StatsBuf = c10::SmallVector<ChunkStats, kStackChunks>;
  using TermBuf = c10::SmallVector<double, kStackChunks>;

  auto chunk_range = [&](int64_t c) { return std::make_pair(c * kChunk, std::min(N, (c + 1) * kChunk)); };
  auto pass1 = [&](ChunkStats* st, int64_t b, int64_t c) {
    auto [j0, j1] = chunk_range(c);
    st[c] = R::fwd_chunk(xp + b * N, mask ? mask + b * N : nullptr, pp + b * N, j0, j1, invT);
  };
  auto pass2 = [&](const ChunkStats* st, double* hs, const Merged& r, int64_t b, int64_t c) {
    auto [j0, j1] = chunk_range(c);
    const scalar_t f = r.S > 0.0 ? static_cast<scalar_t>(std::exp(st[c].m - r.M) / r.S) : scalar_t(0);
    const scalar_t shift = r.n > 0 ? static_cast<scalar_t>(s / static_cast<double>(r.n)) : scalar_t(0);
    hs[c] = R::scale_chunk(pp + b * N, mask ? mask + b * N : nullptr, j0, j1, f, s, shift);
  };
  auto finish = [&](const double* hs, const Merged& r, int64_t b) {
    double h = 0.0;
    if (s == 0.0) {
      h = r.S > 0.0 ? std::log(r.S) - r.U / r.S : std::numeric_limits<double>::quiet_NaN();
    } else {
      for (int64_t c = 0; c < nchunks; ++c) h += hs[c];
    }
    ep[b] = static_cast<scalar_t>(h);
  };

  if (B >= at::get_num_threads() || nchunks == 1) {
    // Over rows: each row's passes run back to back on one thread, the row still in L2.
    at::parallel_for(0, B, std::max<int64_t>(1, 16384 / N), [&](int64_t b0, int64_t b1) {
      StatsBuf st(nchunks);
      TermBuf hs(nchunks);
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t c = 0; c < nchunks; ++c) pass1(st.data(), b, c);
        const Merged r = merge(st.data(), nchunks);
        for (int64_t c = 0; c < nchunks; ++c) pass2(st.data(), hs.data(), r, b, c);
        finish(hs.data(), r, b);
      }
    });
  } else {
    // Fewer rows than threads: the chunks of each row are shared out.
    StatsBuf st(nchunks);
    TermBuf hs(nchunks);
    for (int64_t b = 0; b < B; ++b) {
      at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) pass1(st.data(), b, c);
      });
      const Merged r = merge(st.data(), nchunks);
      at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) pass2(st.data(), hs.data(), r, b, c);
      });
      finish(hs.data(), r, b);
    }
  }
}

template <typename scalar_t>
void bwd_impl(const at::Tensor& p, const at::Tensor& gp, const at::Tensor& ge, const bool* mask, at::Tensor& gx,
              double temperature, double s) {
  using R = Row<scalar_t>;
  const int64_t B = p.size(0), N = p.size(1), nchunks = (N + kChunk - 1) / kChunk;
  const scalar_t* pp = p.const_data_ptr<scalar_t>();
  const scalar_t* gpp = gp.const_data_ptr<scalar_t>();
  const scalar_t* gep = ge.const_data_ptr<scalar_t>();
  scalar_t* out = gx.mutable_data_ptr<scalar_t>();
  const scalar_t invT = static_cast<scalar_t>(1.0 / temperature);
  const bool smooth = s != 0.0;
  const scalar_t one_minus_s = static_cast<scalar_t>(1.0 - s);
  using DotBuf = c10::SmallVector<double, kStackChunks>;  // one row's chunk dots (see fwd_impl)

  auto shift_of = [&](int64_t b) {
    if (!smooth) return scalar_t(0);
    int64_t n_valid = N;
    if (mask) {
      n_valid = 0;
      const bool* m = mask + b * N;
      for (int64_t j = 0; j < N; ++j) n_valid += m[j];
    }
    return static_cast<scalar_t>(s / static_cast<double>(std::max<int64_t>(n_valid, 1)));
  };
  auto range = [&](int64_t c) { return std::make_pair(c * kChunk, std::min(N, (c + 1) * kChunk)); };
  auto pass1 = [&](double* dots, int64_t b, int64_t c, scalar_t shift) {
    auto [j0, j1] = range(c);
    dots[c] =
        R::bwd_chunk(pp + b * N, gpp + b * N, gep[b], out + b * N, j0, j1, smooth, shift, one_minus_s);
  };
  auto row_dot = [&](const double* dots) {
    double d = 0.0;
    for (int64_t c = 0; c < nchunks; ++c) d += dots[c];
    return static_cast<scalar_t>(d);
  };
  auto pass2 = [&](int64_t b, int64_t c, scalar_t shift, scalar_t dot) {
    auto [j0, j1] = range(c);
    R::bwd_apply(pp + b * N, out + b * N, j0, j1, smooth, shift, one_minus_s, dot, invT);
  };

  if (B >= at::get_num_threads() || nchunks == 1) {
    at::parallel_for(0, B, std::max<int64_t>(1, 16384 / N), [&](int64_t b0, int64_t b1) {
      DotBuf dots(nchunks);
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t shift = shift_of(b);
        for (int64_t c = 0; c < nchunks; ++c) pass1(dots.data(), b, c, shift);
        const scalar_t dot = row_dot(dots.data());
        for (int64_t c = 0; c < nchunks; ++c) pass2(b, c, shift, dot);
      }
    });
  } else {
    DotBuf dots(nchunks);
    for (int64_t b = 0; b < B; ++b) {
      const scalar_t shift = shift_of(b);
      at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) pass1(dots.data(), b, c, shift);
      });
      const scalar_t dot = row_dot(dots.data());
      at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) pass2(b, c, shift, dot);
      });
    }
  }
}

}  // namespace

void softmax_fwd_kernel(const at::Tensor& x, const bool* mask, at::Tensor& p, at::Tensor& ent, double temperature,
                        double smoothing) {
  if (x.scalar_type() == at::kDouble)
    fwd_impl<double>(x, mask, p, ent, temperature, smoothing);
  else
    fwd_impl<float>(x, mask, p, ent, temperature, smoothing);
}

void softmax_bwd_kernel(const at::Tensor& p, const at::Tensor& grad_p, const at::Tensor& grad_ent, const bool* mask,
                        at::Tensor& grad_x, double temperature, double smoothing) {
  if (p.scalar_type() == at::kDouble)
    bwd_impl<double>(p, grad_p, grad_ent, mask, grad_x, temperature, smoothing);
  else
    bwd_impl<float>(p, grad_p, grad_ent, mask, grad_x, temperature, smoothing);
}

}  // namespace CPU_CAPABILITY
}  // namespace zoomkern
