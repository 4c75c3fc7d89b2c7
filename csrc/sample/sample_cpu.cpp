// Patch sampling from (B, N) probabilities with the shared counter-based stream (common/rng.h).
//
// Without replacement (the exponential race, equivalent to Gumbel-top-k on log p): key_j = p_j / E_j,
// E_j = -log1p(-v(row, j, stream 0)), -1 where p_j <= 0; a size-k min-heap keeps the best keys in one pass
// (O(N log k), k << N), then the heap is sorted into descending key order (the draw order). Ties go to
// the lower index so the output is a pure function of the inputs.
// With replacement: draw m uses the 52-bit u(row, m); index = first i with cdf_i > u * cdf_{N-1}, the cdf
// accumulated sequentially in double exactly like torch.cumsum of the float64 probs, clamped to the last
// positive position.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "../common/ops.h"
#include "../common/rng.h"

namespace zoomkern {
namespace {

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
void topk_row(const scalar_t* p, int64_t N, int64_t k, uint32_t s0, uint32_t s1, uint32_t row, int64_t* out,
              std::vector<Key<scalar_t>>& heap) {
  // std heap functions with ranks_before as "less" keep the WORST kept key at heap.front().
  auto cmp = [](const Key<scalar_t>& a, const Key<scalar_t>& b) { return ranks_before(a, b); };
  heap.clear();
  // Once the heap is full with worst key w, cell j can only enter with p_j / E_j > w. E >= v (log1p(-v) <= -v),
  // so v * w * (1 - 2^-20) >= p_j rules it out with no log (the 2^-20 margin covers the roundings of
  // v * w', E and p / E). Zero cells (key -1) never enter a full heap: later index, key <= w.
  bool full = false;
  scalar_t w_margin = scalar_t(0);
  for (int64_t j = 0; j < N; ++j) {
    const scalar_t pj = p[j];
    if (full && !(pj > scalar_t(0))) continue;
    const scalar_t v = gumbel_v<scalar_t>(counter_hash(s0, s1, row, static_cast<uint32_t>(j), kStreamGumbel));
    if (full && v * w_margin >= pj) continue;
    const scalar_t key = pj > scalar_t(0) ? pj / -std::log1p(-v) : scalar_t(-1);
    const Key<scalar_t> cand{key, j};
    if (!full) {
      heap.push_back(cand);
      std::push_heap(heap.begin(), heap.end(), cmp);
      full = static_cast<int64_t>(heap.size()) == k;
    } else if (ranks_before(cand, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), cmp);
      heap.back() = cand;
      std::push_heap(heap.begin(), heap.end(), cmp);
    } else {
      continue;
    }
    if (full) w_margin = heap.front().key * static_cast<scalar_t>(1.0 - 0x1p-20);
  }
  std::sort(heap.begin(), heap.end(), cmp);
  for (int64_t m = 0; m < k; ++m) out[m] = heap[m].idx;
}

template <typename scalar_t>
void draws_row(const scalar_t* p, int64_t N, int64_t k, uint32_t s0, uint32_t s1, uint32_t row, int64_t* out,
               std::vector<double>& cdf) {
  cdf.resize(N);
  double acc = 0.0;  // sequential float64 sum: torch.cumsum of the float64 probs, bit for bit
  int64_t last_pos = N - 1;  // no positive cell (invalid input): as the reference
  for (int64_t j = 0; j < N; ++j) {
    acc += static_cast<double>(p[j]);
    cdf[j] = acc;
  }
  for (int64_t j = N - 1; j >= 0; --j) {
    if (p[j] > scalar_t(0)) {
      last_pos = j;
      break;
    }
  }
  const double total = cdf[N - 1];
  for (int64_t m = 0; m < k; ++m) {
    const double v = draw_u(s0, s1, row, static_cast<uint32_t>(m)) * total;
    // searchsorted(right=True): first i with cdf_i > v (N when none).
    const int64_t i = std::upper_bound(cdf.begin(), cdf.end(), v) - cdf.begin();
    out[m] = std::min(i, last_pos);
  }
}

}  // namespace

at::Tensor sample_cpu(const at::Tensor& probs_in, int64_t k, bool replace, const at::Tensor& seed) {
  TORCH_CHECK(probs_in.device().is_cpu(), "sample: probs must be a CPU tensor, got ", probs_in.device());
  TORCH_CHECK(probs_in.dim() == 2, "sample: probs must be 2-D (B, N), got shape ", probs_in.sizes());
  TORCH_CHECK(probs_in.scalar_type() == at::kFloat || probs_in.scalar_type() == at::kDouble,
              "sample: probs must be float32 or float64, got ", probs_in.scalar_type());
  TORCH_CHECK(k >= 0, "sample: k must be >= 0, got ", k);
  const int64_t B = probs_in.size(0), N = probs_in.size(1);
  TORCH_CHECK(N > 0 || k == 0, "sample: probs has no positions (N = 0) but k = ", k);
  TORCH_CHECK(replace || k <= N, "sample: k = ", k, " exceeds the number of positions N = ", N,
              " (without replacement)");
  TORCH_CHECK(seed.numel() == 2 && seed.scalar_type() == at::kLong, "sample: seed must be an int64 tensor of 2 ",
              "values, got ", seed.sizes(), " ", seed.scalar_type());
  TORCH_CHECK(seed.device().is_cpu(), "sample: seed must be on the probs' device (cpu), got ", seed.device());
  const at::Tensor probs = probs_in.contiguous();
  const at::Tensor seed_c = seed.contiguous();
  const uint32_t s0 = static_cast<uint32_t>(seed_c.data_ptr<int64_t>()[0]);
  const uint32_t s1 = static_cast<uint32_t>(seed_c.data_ptr<int64_t>()[1]);
  at::Tensor out = at::empty({B, k}, probs.options().dtype(at::kLong));
  if (B == 0 || k == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "sample_cpu", [&] {
    const scalar_t* pp = probs.data_ptr<scalar_t>();
    int64_t* op = out.data_ptr<int64_t>();
    // One row per task, each computed sequentially from counters: thread count cannot change results.
    at::parallel_for(0, B, std::max<int64_t>(1, 16384 / N), [&](int64_t b0, int64_t b1) {
      std::vector<Key<scalar_t>> heap;
      std::vector<double> cdf;
      if (!replace) heap.reserve(k);
      for (int64_t b = b0; b < b1; ++b) {
        const uint32_t row = static_cast<uint32_t>(b);
        if (replace)
          draws_row<scalar_t>(pp + b * N, N, k, s0, s1, row, op + b * k, cdf);
        else
          topk_row<scalar_t>(pp + b * N, N, k, s0, s1, row, op + b * k, heap);
      }
    });
  });
  return out;
}

}  // namespace zoomkern
