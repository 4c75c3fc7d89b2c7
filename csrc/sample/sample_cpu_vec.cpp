// SIMD body of patch sampling (csrc/sample/sample_cpu.cpp checks arguments and picks the build).
// Compiled once per CPU capability (setup.py), so everything is in zoomkern::CPU_CAPABILITY.
// The random stream is common/rng.h: every uniform is a pure function of (seed, row, column, stream).
//
// Without replacement (exponential race = Gumbel-top-k): key_j = p_j / E_j, E_j = -log1p(-v_j), -1 where
// p_j <= 0; the k largest keys, larger first, lower index first on ties. A size-k min-heap is filled with the
// first cells; after that a cell can only enter with p_j / E_j > w (w the worst kept key), and since
// E >= v, v * w * (1 - 2^-20) >= p_j rules it out without a log (the margin covers the roundings of
// v * w', E and p / E). So the hot loop is the counter hash in integer vector lanes plus (float32) one
// vector compare per Vec::size() cells; the logs run only for the few lanes that pass. Skipped cells are
// never computed, so the result equals the full scan.
// Rows are cut into column pieces when there are fewer rows than threads; each piece keeps its own top k
// (in a per-call scratch, no allocation per row) and the row merges them in the same total order, so the
// result never depends on the thread count.
//
// With replacement: t_m = u_m * total (u the 52-bit draw uniform, total the float64 row sum), and the index
// of draw m is the first i with cdf_i > t_m, cdf the sequential float64 cumsum (bit for bit torch.cumsum of
// the float64 probs), clamped to the last positive cell. A float64 cumsum is one dependent add per cell
// (latency-bound on one row), so kRowsR rows are summed together and their add chains overlap; the cdf is
// kept only at block ends, and each draw re-adds one block (see with_replacement).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../common/rng.h"
#include "sample_cpu_vec.h"

namespace zoomkern {
namespace CPU_CAPABILITY {
namespace {

using IVec = at::vec::Vectorized<int32_t>;
constexpr int64_t L = IVec::size();  // columns hashed together
constexpr int64_t kMinPiece = 8192;  // columns per piece when rows are split over threads
constexpr int64_t kRowsR = 8;        // rows summed together with replacement

// Logical right shift of uint32 lanes held in int32 (at::vec only has the arithmetic one).
template <int S>
inline IVec srl(const IVec& x) {
#if defined(CPU_CAPABILITY_AVX2)
  return _mm256_srli_epi32(x, S);
#else
  return (x >> IVec(S)) & IVec(static_cast<int32_t>((1u << (32 - S)) - 1u));
#endif
}

#if defined(CPU_CAPABILITY_AVX2)
inline IVec hash32v(IVec x) {  // lowbias32, as zoomkern::hash32 (mullo wraps like uint32)
  x = x ^ srl<16>(x);
  x = x * IVec(0x7feb352d);
  x = x ^ srl<15>(x);
  x = x * IVec(static_cast<int32_t>(0x846ca68bu));
  return x ^ srl<16>(x);
}
#endif

// counter_hash(s0, s1, row, j + lane, stream 0) for the L lanes, from colh[j + lane] = hash32(j + lane): the
// first round depends on the column alone, so it is computed once per call and shared by every row. The
// generic build hashes lane by lane in uint32 (its Vectorized<int32_t> would multiply in signed int, where
// wrapping is undefined).
inline IVec gumbel_hash_v(uint32_t s0, uint32_t s1, uint32_t row, const uint32_t* colh) {
#if defined(CPU_CAPABILITY_AVX2)
  IVec h = hash32v(IVec(static_cast<int32_t>(row)) + IVec::loadu(colh));
  h = hash32v(IVec(static_cast<int32_t>(s1)) + h);
  return hash32v(IVec(static_cast<int32_t>(s0)) + h);
#else
  alignas(64) uint32_t hs[L];
  for (int64_t l = 0; l < L; ++l) hs[l] = hash32(s0 + hash32(s1 + hash32(row + colh[l])));
  return IVec::loadu(hs);
#endif
}

// The probabilities are checked in the kernels' own pass over them (a separate probs.min() cost a second
// read of the input and a second parallel region): a running vector min, NaN-propagating, is >= 0 iff no
// value is NaN or negative.
template <typename scalar_t>
inline bool min_ok(const at::vec::Vectorized<scalar_t>& m) {
  using Vec = at::vec::Vectorized<scalar_t>;
  return at::vec::vec_reduce_all<scalar_t>([](Vec a, Vec b) { return at::vec::minimum(a, b); }, m) >=
         scalar_t(0);
}

// m = min(m, p[0, n)), n <= a few vectors (one cdf block, in L1 after its sums); padded lanes are 0.
template <typename scalar_t>
inline void min_into(at::vec::Vectorized<scalar_t>& m, const scalar_t* p, int64_t n) {
  using Vec = at::vec::Vectorized<scalar_t>;
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size()) m = at::vec::minimum(m, Vec::loadu(p + j));
  if (j < n) m = at::vec::minimum(m, Vec::loadu(p + j, n - j));
}

template <typename scalar_t>
struct Key {
  scalar_t key;
  int64_t idx;
};

// "a ranks before b" in draw order: larger key first, lower index on ties.
template <typename scalar_t>
inline bool ranks_before(const Key<scalar_t>& a, const Key<scalar_t>& b) {
  return a.key > b.key || (a.key == b.key && a.idx < b.idx);
}

template <typename scalar_t>
struct TopK {
  // heap[0, n) with ranks_before as "less": the WORST kept key at heap[0].
  Key<scalar_t>* heap;
  int64_t n = 0, k;
  scalar_t w_margin = scalar_t(0);  // worst key * (1 - 2^-20), valid once full
  bool valid = true;                 // no NaN or negative probability seen (scalar cells)
  at::vec::Vectorized<scalar_t> vmin{scalar_t(0)};  // running min of the vector blocks (NaN propagates)

  static bool cmp(const Key<scalar_t>& a, const Key<scalar_t>& b) { return ranks_before(a, b); }
  bool full() const { return n == k; }

  void offer(const Key<scalar_t>& c) {
    if (n < k) {
      heap[n++] = c;
      std::push_heap(heap, heap + n, cmp);
    } else if (ranks_before(c, heap[0])) {
      std::pop_heap(heap, heap + n, cmp);
      heap[n - 1] = c;
      std::push_heap(heap, heap + n, cmp);
    } else {
      return;
    }
    if (n == k) w_margin = heap[0].key * static_cast<scalar_t>(1.0 - 0x1p-20);
  }

  // One cell, scalar: the heap filling phase and the row's tail.
  void scalar_cell(scalar_t pj, uint32_t h, int64_t j) {
    valid &= pj >= scalar_t(0);  // false for NaN too
    if (full() && !(pj > scalar_t(0))) return;
    const scalar_t v = gumbel_v<scalar_t>(h);
    if (full() && v * w_margin >= pj) return;
    offer({pj > scalar_t(0) ? pj / -std::log1p(v * scalar_t(-1)) : scalar_t(-1), j});
  }
};

// Lanes of one block whose keys may enter (float32: screened in float lanes).
inline void block_f32(TopK<float>& t, const float* p, int64_t j, const IVec& h) {
  using FVec = at::vec::Vectorized<float>;
  static_assert(FVec::size() == IVec::size(), "float and int32 lanes must match");
  const FVec hi = at::vec::convert_to_fp_of_same_size<float>(srl<8>(h)) * FVec(0x1p-24f);
  const FVec lo = (at::vec::convert_to_fp_of_same_size<float>(h & IVec(255)) + FVec(0.5f)) * FVec(0x1p-32f);
  const FVec v = at::vec::minimum(hi + lo, FVec(kV32Max));
  const FVec pv = FVec::loadu(p + j);
  t.vmin = at::vec::minimum(t.vmin, pv);  // the value check rides on the load: NaN or < 0 shows in the min
  if ((v * FVec(t.w_margin) < pv).zero_mask() == (1 << L) - 1) return;  // no lane can enter
  alignas(64) float vs[L];
  alignas(64) float keys[L];
  v.store(vs);
  (pv / (FVec(0.f) - (FVec(0.f) - v).log1p())).store(keys);
  for (int64_t l = 0; l < L; ++l) {
    const float pj = p[j + l];
    if (!(pj > 0.f) || vs[l] * t.w_margin >= pj) continue;  // the threshold may have risen within the block
    t.offer({keys[l], j + l});
  }
}

inline void block_f64(TopK<double>& t, const double* p, int64_t j, const IVec& h) {
  alignas(64) uint32_t hs[L];
  h.store(hs);
  for (int64_t l = 0; l < L; ++l) {
    const double pj = p[j + l];
    t.valid &= pj >= 0.0;
    if (!(pj > 0.0)) continue;
    const double v = gumbel_v_f64(hs[l]);
    if (v * t.w_margin >= pj) continue;
    t.offer({pj / -std::log1p(-v), j + l});
  }
}

// Top k of columns [j0, j1) of one row into `heap` (at most k kept); returns how many, and clears `valid`
// when a value is NaN or negative.
template <typename scalar_t>
int64_t topk_piece(const scalar_t* p, const uint32_t* colh, int64_t j0, int64_t j1, int64_t k, uint32_t s0,
                   uint32_t s1, uint32_t row, Key<scalar_t>* heap, char& valid) {
  TopK<scalar_t> t{heap, 0, k};
  int64_t j = j0;
  for (; j < j1 && !t.full(); ++j) t.scalar_cell(p[j], counter_hash(s0, s1, row, static_cast<uint32_t>(j), 0), j);
  for (; j + L <= j1; j += L) {
    const IVec h = gumbel_hash_v(s0, s1, row, colh + j);
    if constexpr (std::is_same_v<scalar_t, float>) {
      block_f32(t, p, j, h);
    } else {
      block_f64(t, p, j, h);
    }
  }
  for (; j < j1; ++j) t.scalar_cell(p[j], counter_hash(s0, s1, row, static_cast<uint32_t>(j), 0), j);
  valid = t.valid && min_ok(t.vmin);
  return t.n;
}

// Returns false (indices unspecified) when a probability is NaN or negative.
template <typename scalar_t>
bool without_replacement(const scalar_t* pp, int64_t B, int64_t N, int64_t k, uint32_t s0, uint32_t s1,
                         int64_t* op) {
  // Pieces per row: enough tasks for every thread when rows are few, each piece >= kMinPiece columns.
  const int64_t threads = at::get_num_threads();
  const int64_t pieces = std::max<int64_t>(1, std::min((threads + B - 1) / B, N / kMinPiece));
  const int64_t width = (N + pieces - 1) / pieces;
  // One scratch for the call: k keys per task plus their counts.
  std::vector<Key<scalar_t>> scratch(static_cast<size_t>(B * pieces * k));
  std::vector<int64_t> kept(static_cast<size_t>(B * pieces));
  std::vector<char> valid(static_cast<size_t>(B * pieces), 1);
  // One parallel region per call: on a busy machine every region ends waiting for its slowest thread, and a
  // descheduled thread turns a region's barrier into milliseconds. The column hashes and the merge are
  // serial (N hashes; pieces * k keys per row).
  std::vector<uint32_t> colh(static_cast<size_t>(N));
  int64_t j = 0;
#if defined(CPU_CAPABILITY_AVX2)
  for (; j + L <= N; j += L) hash32v(IVec::arange(static_cast<int32_t>(j), 1)).store(colh.data() + j);
#endif
  for (; j < N; ++j) colh[j] = hash32(static_cast<uint32_t>(j) + kStreamGumbel * kGolden);
  at::parallel_for(0, B * pieces, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / pieces, c = t % pieces;
      const int64_t j0 = c * width, j1 = std::min(N, j0 + width);
      kept[t] = j0 < j1 ? topk_piece(pp + b * N, colh.data(), j0, j1, k, s0, s1, static_cast<uint32_t>(b),
                                     &scratch[t * k], valid[t])
                        : 0;
    }
  });
  if (std::find(valid.begin(), valid.end(), char(0)) != valid.end()) return false;
  auto cmp = [](const Key<scalar_t>& a, const Key<scalar_t>& b) { return ranks_before(a, b); };
  for (int64_t b = 0; b < B; ++b) {
    Key<scalar_t>* keys = &scratch[b * pieces * k];
    int64_t n = kept[b * pieces];
    for (int64_t c = 1; c < pieces; ++c) {  // compact the pieces' survivors (at most pieces * k)
      std::copy_n(keys + c * k, kept[b * pieces + c], keys + n);
      n += kept[b * pieces + c];
    }
    if (pieces > 1) std::partial_sort(keys, keys + k, keys + n, cmp);
    else std::sort(keys, keys + n, cmp);
    for (int64_t m = 0; m < k; ++m) op[b * k + m] = keys[m].idx;
  }
  return true;
}

// With replacement. Pass 1 walks kRowsR rows together (independent add chains) and keeps the exact
// sequential cdf at every kBlock-th cell. A draw then finds its block by binary search over those values and
// re-adds only inside the block, from the stored prefix: the same sums in the same order as one full
// sequential cumsum, so the result is bit for bit torch.searchsorted(torch.cumsum(p.double()), u * total).
constexpr int64_t kBlock = 64;

// Float64 cumsum of R rows at once, storing the running sum at each block end. Each block is checked for
// NaN and negative values while it is in L1 (a vector min per row); returns false if one was found.
template <int R, typename scalar_t>
bool block_ends(const scalar_t* pp, double* ends, int64_t b0, int64_t N, int64_t nblk) {
  double acc[R];
  at::vec::Vectorized<scalar_t> mins[R];
  for (int r = 0; r < R; ++r) acc[r] = 0.0, mins[r] = at::vec::Vectorized<scalar_t>(scalar_t(0));
  for (int64_t blk = 0; blk < nblk; ++blk) {
    const int64_t j0 = blk * kBlock, j1 = std::min(N, j0 + kBlock);
    for (int64_t j = j0; j < j1; ++j)
      for (int r = 0; r < R; ++r) acc[r] += static_cast<double>(pp[(b0 + r) * N + j]);
    for (int r = 0; r < R; ++r) {
      ends[(b0 + r) * nblk + blk] = acc[r];
      min_into(mins[r], pp + (b0 + r) * N + j0, j1 - j0);
    }
  }
  bool ok = true;
  for (int r = 0; r < R; ++r) ok &= min_ok(mins[r]);
  return ok;
}

// The k draws of row b from its block-end cdf values e.
template <typename scalar_t>
void draws_row(const scalar_t* p, const double* e, int64_t N, int64_t nblk, int64_t k, uint32_t s0, uint32_t s1,
               int64_t b, int64_t* out) {
  int64_t last = N - 1;  // no positive cell (invalid input): as the reference
  for (int64_t j = N - 1; j >= 0; --j)
    if (p[j] > scalar_t(0)) {
      last = j;
      break;
    }
  const double total = e[nblk - 1];
  for (int64_t m = 0; m < k; ++m) {
    const double t = draw_u(s0, s1, static_cast<uint32_t>(b), static_cast<uint32_t>(m)) * total;
    const int64_t blk = std::upper_bound(e, e + nblk, t) - e;  // first block whose end cdf exceeds t
    int64_t idx = N;  // searchsorted(right=True) finds no cdf > t: N, clamped below
    if (blk < nblk) {
      double acc = blk ? e[blk - 1] : 0.0;
      for (int64_t j = blk * kBlock; j < N; ++j) {
        acc += static_cast<double>(p[j]);
        if (acc > t) {
          idx = j;
          break;
        }
      }
    }
    out[m] = std::min(idx, last);
  }
}

// Returns false (indices unspecified) when a probability is NaN or negative.
template <typename scalar_t>
bool with_replacement(const scalar_t* pp, int64_t B, int64_t N, int64_t k, uint32_t s0, uint32_t s1, int64_t* op) {
  const int64_t nblk = (N + kBlock - 1) / kBlock;
  std::vector<double> ends(static_cast<size_t>(B * nblk));  // one buffer per call, not per row
  const int64_t groups = (B + kRowsR - 1) / kRowsR;
  std::vector<char> valid(static_cast<size_t>(groups), 1);
  // One parallel region per call (see without_replacement): each task sums its rows, then serves their draws.
  at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t r0 = g * kRowsR, r1 = std::min(B, r0 + kRowsR);
      int64_t b = r0;
      bool ok = true;
      if (r1 - b == kRowsR) ok &= block_ends<kRowsR>(pp, ends.data(), b, N, nblk), b = r1;
      for (; b + 4 <= r1; b += 4) ok &= block_ends<4>(pp, ends.data(), b, N, nblk);
      for (; b + 2 <= r1; b += 2) ok &= block_ends<2>(pp, ends.data(), b, N, nblk);
      for (; b < r1; ++b) ok &= block_ends<1>(pp, ends.data(), b, N, nblk);
      valid[g] = ok;
      if (!ok) continue;  // the call fails: skip the draws
      for (b = r0; b < r1; ++b) draws_row(pp + b * N, &ends[b * nblk], N, nblk, k, s0, s1, b, op + b * k);
    }
  });
  return std::find(valid.begin(), valid.end(), char(0)) == valid.end();
}

}  // namespace

bool sample_kernel(const at::Tensor& probs, int64_t k, bool replace, uint32_t s0, uint32_t s1, at::Tensor& out) {
  const int64_t B = probs.size(0), N = probs.size(1);
  int64_t* op = out.data_ptr<int64_t>();
  if (probs.scalar_type() == at::kFloat) {
    const float* pp = probs.data_ptr<float>();
    return replace ? with_replacement(pp, B, N, k, s0, s1, op) : without_replacement(pp, B, N, k, s0, s1, op);
  }
  const double* pp = probs.data_ptr<double>();
  return replace ? with_replacement(pp, B, N, k, s0, s1, op) : without_replacement(pp, B, N, k, s0, s1, op);
}

}  // namespace CPU_CAPABILITY
}  // namespace zoomkern
