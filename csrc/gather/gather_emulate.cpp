// Runs the CUDA gather's per-thread bodies (gather_body.h) on the CPU over the CUDA launch grid:
// every (warp, lane) pair in the order the GPU would schedule them, with the kernel's choice between the
// channel-row body and the shared-memory staged body (HWC, dense pixels). In the staged body every lane
// loads before any lane stores, as the __syncwarp between them orders it on the GPU. Tests compare it with
// the reference, so the index and alignment arithmetic of the CUDA kernels is checked without a GPU.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "../common/dispatch.h"
#include "gather_body.h"

namespace zoomkern {
namespace {

template <typename in_t, typename out_t>
void run_grid(const GatherParams<in_t, out_t>& p, int64_t n_warps, bool allow_staging) {
  alignas(16) unsigned char smem[kStageBytes + 16];
  const bool staged = allow_staging && use_staging(p);
  const int64_t rows = p.B * p.k * (staged ? 1 : p.C) * p.ph;
  const int64_t ppt = staged_px_per_tile(p);
  for (int64_t warp = 0; warp < n_warps; ++warp) {
    for (int64_t row = warp; row < rows; row += n_warps) {
      if (!staged) {
        for (int lane = 0; lane < 32; ++lane) gather_patch_row(p, row, lane, 32);
        continue;
      }
      const StagedRow g = staged_row(p, row);
      for (int64_t tile = 0; tile * ppt < p.pw; ++tile) {
        std::memset(smem, 0xAB, sizeof(smem));  // stale bytes must never reach the output
        for (int lane = 0; lane < 32; ++lane) staged_load(p, g, tile, lane, 32, smem);
        for (int lane = 0; lane < 32; ++lane) staged_store(p, g, tile, lane, 32, smem);
      }
    }
  }
}

// Output in the image's dtype (the arithmetic under test is the indexing, not the conversions).
at::Tensor gather_emulate_cuda_grid(const at::Tensor& image, const at::Tensor& offsets_in, int64_t ph, int64_t pw,
                                    c10::string_view layout, int64_t n_warps, bool staging) {
  TORCH_CHECK(n_warps > 0, "gather_emulate_cuda_grid: n_warps must be positive");
  const bool hwc = layout == "HWC";
  const at::Tensor offsets = offsets_in.contiguous();
  const int64_t C = image.size(hwc ? 3 : 1);
  at::Tensor out = at::empty({image.size(0), offsets.size(1), C, ph, pw}, image.options());
  dispatch_pixel_type(image.scalar_type(), "image", [&](auto tag) {
    using T = typename decltype(tag)::type;
    // Poisoned: an unwritten element stays NaN (floats) or 171 (integers), which the tests' images avoid.
    std::fill_n(static_cast<T*>(out.data_ptr()), out.numel(),
                std::is_integral_v<T> ? T(171) : static_cast<T>(std::numeric_limits<float>::quiet_NaN()));
    GatherParams<T, T> p{static_cast<const T*>(image.const_data_ptr()), offsets.const_data_ptr<int64_t>(),
                         static_cast<T*>(out.data_ptr()), nullptr, nullptr, image.size(0), C,
                         image.size(hwc ? 1 : 2), image.size(hwc ? 2 : 3), offsets.size(1), ph, pw,
                         image.stride(0), image.stride(hwc ? 3 : 1), image.stride(hwc ? 1 : 2),
                         image.stride(hwc ? 2 : 3)};
    run_grid(p, n_warps, staging);
  });
  return out;
}

}  // namespace
}  // namespace zoomkern

TORCH_LIBRARY_FRAGMENT(zoomkern_C, m) {
  m.def(
      "gather_emulate_cuda_grid(Tensor image, Tensor offsets, int ph, int pw, str layout, int n_warps, "
      "bool staging=True) -> Tensor");
}

TORCH_LIBRARY_IMPL(zoomkern_C, CPU, m) { m.impl("gather_emulate_cuda_grid", &zoomkern::gather_emulate_cuda_grid); }
