// Patch sampling from (B, N) probabilities with the shared counter-based stream (common/rng.h): argument
// checks and the registration-facing entry point; the kernels are SIMD code in sample_cpu_vec.cpp, built once
// per CPU capability, and ZOOMKERN_CPU_CALL picks the build at run time.
//
// Without replacement (the exponential race, equivalent to Gumbel-top-k on log p): key_j = p_j / E_j,
// E_j = -log1p(-v(row, j, stream 0)), -1 where p_j <= 0; a size-k min-heap keeps the best keys in one pass
// (O(N log k), k << N), then the heap is sorted into descending key order (the draw order). Ties go to
// the lower index so the output is a pure function of the inputs.
// With replacement: draw m uses the 52-bit u(row, m); index = first i with cdf_i > u * cdf_{N-1}, the cdf
// accumulated sequentially in double exactly like torch.cumsum of the float64 probs, clamped to the last
// positive position.
// Both kernels check the values in their own pass over the probabilities: NaN or a negative value is a
// ValueError (c10::ValueError) naming probs, raised after the kernel.
#include <ATen/ops/any.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/isnan.h>

#include "../common/ops.h"
#include "sample_cpu_vec.h"

namespace zoomkern {

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
  if (!ZOOMKERN_CPU_CALL(sample_kernel, probs, k, replace, s0, s1, out)) {
    // Only on failure: which of the two it was, for the message (the op's Python check said the same).
    const bool nan = at::isnan(probs).any().item<bool>();
    TORCH_CHECK_VALUE(false, nan ? "probs contains NaN" : "probs contains negative values");
  }
  return out;
}

}  // namespace zoomkern
