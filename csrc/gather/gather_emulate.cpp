// Runs the CUDA gather's per-thread body (gather_body.h) on the CPU over the CUDA launch grid:
// every (warp, lane) pair in the order the GPU would schedule them. Tests compare it with the
// reference, so the index arithmetic of the CUDA kernel is checked on a machine without a GPU.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "gather_body.h"

namespace zoomkern {
namespace {

template <typename in_t, typename out_t>
void run_grid(const GatherParams<in_t, out_t>& p, int64_t rows, int64_t n_warps) {
  for (int64_t warp = 0; warp < n_warps; ++warp)
    for (int lane = 0; lane < 32; ++lane)
      for (int64_t row = warp; row < rows; row += n_warps) gather_patch_row(p, row, lane, 32);
}

// Float images only (the arithmetic under test is the indexing, not the conversions).
at::Tensor gather_emulate_cuda_grid(const at::Tensor& image, const at::Tensor& offsets_in, int64_t ph, int64_t pw,
                                    c10::string_view layout, int64_t n_warps) {
  TORCH_CHECK(image.scalar_type() == at::kFloat, "gather_emulate_cuda_grid: image must be float32");
  TORCH_CHECK(n_warps > 0, "gather_emulate_cuda_grid: n_warps must be positive");
  const bool hwc = layout == "HWC";
  const at::Tensor offsets = offsets_in.contiguous();
  const int64_t C = image.size(hwc ? 3 : 1);
  at::Tensor out = at::empty({image.size(0), offsets.size(1), C, ph, pw}, image.options());
  GatherParams<float, float> p{image.const_data_ptr<float>(), offsets.data_ptr<int64_t>(), out.data_ptr<float>(),
                               nullptr, nullptr, image.size(0), C, image.size(hwc ? 1 : 2),
                               image.size(hwc ? 2 : 3), offsets.size(1), ph, pw, image.stride(0),
                               image.stride(hwc ? 3 : 1), image.stride(hwc ? 1 : 2), image.stride(hwc ? 2 : 3)};
  run_grid(p, image.size(0) * offsets.size(1) * C * ph, n_warps);
  return out;
}

}  // namespace
}  // namespace zoomkern

TORCH_LIBRARY_FRAGMENT(zoomkern_C, m) {
  m.def("gather_emulate_cuda_grid(Tensor image, Tensor offsets, int ph, int pw, str layout, int n_warps) -> Tensor");
}

TORCH_LIBRARY_IMPL(zoomkern_C, CPU, m) { m.impl("gather_emulate_cuda_grid", &zoomkern::gather_emulate_cuda_grid); }
