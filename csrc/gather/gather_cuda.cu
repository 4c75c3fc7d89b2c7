// CUDA gather: reads only the patch bytes, from a CUDA image or straight from a PINNED HOST image
// through unified virtual addressing (no staging copy of the image). One warp per output row: a channel
// row of a patch, or for HWC images with dense pixels a whole patch row staged through shared memory with
// 16-byte loads (gather_body.h).
// Registered as the CUDA kernel of zoomkern_C::gather: the dispatcher picks it whenever the offsets
// are on a CUDA device, even when the image is a pinned CPU tensor.
#include <ATen/ATen.h>
#include <ATen/core/CachingHostAllocator.h>
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

// A pinned image from PyTorch's caching host allocator goes back to its pool when the tensor dies; without
// an event on the stream, the block could be handed out (and overwritten) while this kernel still reads
// it. record_event makes the allocator wait for the stream's work first, as a non_blocking copy does.
// (Pinned memory from elsewhere, e.g. cudaHostRegister, is not the allocator's: it returns false.)
void record_host_use(const at::Tensor& image, const at::cuda::CUDAStream& stream) {
  const c10::DataPtr& dp = image.storage().data_ptr();
  at::getHostAllocator(at::kCUDA)->record_event(dp.get(), dp.get_context(), stream.unwrap());
}

template <typename in_t, typename out_t>
__global__ void gather_staged_kernel(GatherParams<in_t, out_t> p, int64_t rows) {
  __shared__ __align__(16) unsigned char smem[kWarpsPerBlock][kStageBytes + 16];
  const int lane = threadIdx.x & 31;
  unsigned char* buf = smem[threadIdx.x >> 5];
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t n_warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  const int64_t ppt = staged_px_per_tile(p);
  const int64_t tiles = (p.pw + ppt - 1) / ppt;
  for (int64_t row = warp; row < rows; row += n_warps) {  // the same trip count for every lane of a warp
    const StagedRow g = staged_row(p, row);
    for (int64_t tile = 0; tile < tiles; ++tile) {
      staged_load(p, g, tile, lane, 32, buf);
      __syncwarp();
      staged_store(p, g, tile, lane, 32, buf);
      __syncwarp();
    }
  }
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
      const bool staged = use_staging(p);
      const int64_t rows = p.B * p.k * (staged ? 1 : C) * ph;
      const int64_t blocks = std::min<int64_t>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock, 1 << 20);
      const at::cuda::CUDAStream stream = at::cuda::getCurrentCUDAStream();
      if (staged) {
        gather_staged_kernel<in_t, out_t><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(p, rows);
      } else {
        gather_patches_kernel<in_t, out_t><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(p, rows);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (!image.is_cuda()) record_host_use(image, stream);
    });
  });
  return out;
}

}  // namespace
}  // namespace zoomkern

TORCH_LIBRARY_IMPL(zoomkern_C, CUDA, m) { m.impl("gather", &zoomkern::gather_cuda); }
