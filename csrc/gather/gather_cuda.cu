// CUDA gather: reads only the patch bytes, from a CUDA image or straight from a PINNED HOST image
// through unified virtual addressing (no staging copy of the image). One warp per output patch row.
// Registered as the CUDA kernel of zoomkern_C::gather: the dispatcher picks it whenever the offsets
// are on a CUDA device, even when the image is a pinned CPU tensor.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "../common/dispatch.h"
#include "gather_body.h"

namespace zoomkern {
namespace {

constexpr int kWarpsPerBlock = 4;

template <typename in_t, typename out_t>
__global__ void gather_patches_kernel(GatherParams<in_t, out_t> p, int64_t rows) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t n_warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t row = warp; row < rows; row += n_warps) gather_patch_row(p, row, lane, 32);
}

at::Tensor gather_cuda(const at::Tensor& image, const at::Tensor& offsets_in, int64_t ph, int64_t pw,
                       c10::string_view layout, at::ScalarType out_dtype, const std::optional<at::Tensor>& mean,
                       const std::optional<at::Tensor>& std_) {
  TORCH_CHECK(offsets_in.is_cuda(), "gather: offsets must be on the CUDA device, got ", offsets_in.device());
  TORCH_CHECK(image.is_cuda() || image.is_pinned(), "gather: image must be on the CUDA device or in pinned host ",
              "memory (image.pin_memory()), got a pageable ", image.device(), " tensor");
  TORCH_CHECK(!image.is_cuda() || image.device() == offsets_in.device(), "gather: image is on ", image.device(),
              " but offsets are on ", offsets_in.device());
  TORCH_CHECK(image.dim() == 4, "gather: image must be 4-D, got shape ", image.sizes());
  TORCH_CHECK(offsets_in.scalar_type() == at::kLong, "gather: offsets must be int64");
  TORCH_CHECK(offsets_in.dim() == 3 && offsets_in.size(2) == 2 && offsets_in.size(0) == image.size(0),
              "gather: offsets must have shape (B, k, 2), got ", offsets_in.sizes());
  TORCH_CHECK(ph > 0 && pw > 0, "gather: patch size must be positive");
  TORCH_CHECK(layout == "CHW" || layout == "HWC", "gather: layout must be 'CHW' or 'HWC'");
  const c10::cuda::CUDAGuard guard(offsets_in.device());
  const bool hwc = layout == "HWC";
  const int64_t C = image.size(hwc ? 3 : 1);
  const at::Tensor offsets = offsets_in.contiguous();
  at::Tensor out = at::empty({image.size(0), offsets.size(1), C, ph, pw}, offsets.options().dtype(out_dtype));
  if (out.numel() == 0) return out;
  dispatch_pixel_type(image.scalar_type(), "image", [&](auto in_tag) {
    using in_t = typename decltype(in_tag)::type;
    dispatch_pixel_type(out_dtype, "out_dtype", [&](auto out_tag) {
      using out_t = typename decltype(out_tag)::type;
      GatherParams<in_t, out_t> p;
      // Under UVA a pinned host pointer is dereferenceable on the device as it is.
      p.img = static_cast<const in_t*>(image.const_data_ptr());
      p.offs = offsets.data_ptr<int64_t>();
      p.out = static_cast<out_t*>(out.data_ptr());
      at::Tensor m = mean ? mean->to(offsets.device(), out_dtype).contiguous() : at::Tensor();
      at::Tensor s = std_ ? std_->to(offsets.device(), out_dtype).contiguous() : at::Tensor();
      p.mean = m.defined() ? static_cast<const out_t*>(m.const_data_ptr()) : nullptr;
      p.std_ = s.defined() ? static_cast<const out_t*>(s.const_data_ptr()) : nullptr;
      p.B = image.size(0);
      p.C = C;
      p.H = image.size(hwc ? 1 : 2);
      p.W = image.size(hwc ? 2 : 3);
      p.k = offsets.size(1);
      p.ph = ph;
      p.pw = pw;
      p.sb = image.stride(0);
      p.sc = image.stride(hwc ? 3 : 1);
      p.sh = image.stride(hwc ? 1 : 2);
      p.sw = image.stride(hwc ? 2 : 3);
      const int64_t rows = p.B * p.k * C * ph;
      const int64_t blocks = std::min<int64_t>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock, 1 << 20);
      gather_patches_kernel<in_t, out_t><<<blocks, 32 * kWarpsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
          p, rows);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

}  // namespace
}  // namespace zoomkern

TORCH_LIBRARY_IMPL(zoomkern_C, CUDA, m) { m.impl("gather", &zoomkern::gather_cuda); }
