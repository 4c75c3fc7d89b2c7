// Patch gather: (B, C, H, W) or (B, H, W, C) image with ARBITRARY strides -> (B, k, C, ph, pw) patches.
//
// Argument checks and the registration; the kernel is gather_cpu_vec.cpp, built per CPU capability.
// Each task writes its own disjoint output rows, so results never depend on the thread count. Only the
// patch pixels are read (a huge, non-contiguous or memory-mapped image is never copied). Pixels outside
// the image are 0 before normalisation. Conversion and normalisation follow the reference op by op:
// value.to(out), then - mean.to(out), then / std.to(out), each rounded to out_t (bit for bit).
#include <ATen/ops/empty.h>

#include <string>

#include "../common/cpu_capability.h"
#include "../common/dispatch.h"
#include "../common/ops.h"
#include "gather_cpu_vec.h"

ZOOMKERN_CPU_VARIANTS(void, gather_cpu_kernel, (const GatherArgs& a))

namespace zoomkern {
namespace {

at::Tensor check_stat(const std::optional<at::Tensor>& t, const char* name, int64_t C) {
  if (!t.has_value()) return at::Tensor();
  TORCH_CHECK(t->device().is_cpu(), "gather: ", name, " must be a CPU tensor, got ", t->device());
  TORCH_CHECK(t->scalar_type() == at::kFloat, "gather: ", name, " must be float32, got ", t->scalar_type());
  TORCH_CHECK(t->dim() == 1 && t->size(0) == C, "gather: ", name, " must have shape (C,) = (", C, ",), got ",
              t->sizes());
  return t->contiguous();
}

}  // namespace

at::Tensor gather_cpu(const at::Tensor& image, const at::Tensor& offsets_in, int64_t ph, int64_t pw,
                      c10::string_view layout, at::ScalarType out_dtype, const std::optional<at::Tensor>& mean,
                      const std::optional<at::Tensor>& std_) {
  TORCH_CHECK(image.device().is_cpu(), "gather: image must be a CPU tensor, got ", image.device());
  TORCH_CHECK(image.dim() == 4, "gather: image must be 4-D, got shape ", image.sizes());
  TORCH_CHECK(layout == "CHW" || layout == "HWC", "gather: layout must be 'CHW' or 'HWC', got '",
              std::string(layout), "'");
  TORCH_CHECK(offsets_in.device().is_cpu(), "gather: offsets must be a CPU tensor, got ", offsets_in.device());
  TORCH_CHECK(offsets_in.scalar_type() == at::kLong, "gather: offsets must be int64, got ",
              offsets_in.scalar_type());
  TORCH_CHECK(offsets_in.dim() == 3 && offsets_in.size(2) == 2 && offsets_in.size(0) == image.size(0),
              "gather: offsets must have shape (B, k, 2) with B = ", image.size(0), ", got ", offsets_in.sizes());
  TORCH_CHECK(ph > 0 && pw > 0, "gather: patch size must be positive, got (", ph, ", ", pw, ")");
  const bool hwc = layout == "HWC";
  GatherArgs g;
  g.B = image.size(0);
  g.C = image.size(hwc ? 3 : 1);
  g.H = image.size(hwc ? 1 : 2);
  g.W = image.size(hwc ? 2 : 3);
  g.k = offsets_in.size(1);
  g.ph = ph;
  g.pw = pw;
  g.sb = image.stride(0);
  g.sc = image.stride(hwc ? 3 : 1);
  g.sh = image.stride(hwc ? 1 : 2);
  g.sw = image.stride(hwc ? 2 : 3);
  const at::Tensor mean_c = check_stat(mean, "mean", g.C);
  const at::Tensor std_c = check_stat(std_, "std", g.C);
  const bool norm = mean_c.defined() || std_c.defined();
  TORCH_CHECK(!norm || at::isFloatingType(out_dtype), "gather: normalising (mean/std) needs a floating ",
              "out_dtype, got ", out_dtype);
  dispatch_pixel_type(image.scalar_type(), "image", [](auto) {});  // refuse other types, even when empty
  dispatch_pixel_type(out_dtype, "out_dtype", [](auto) {});
  const at::Tensor offsets = offsets_in.contiguous();
  at::Tensor out = at::empty({g.B, g.k, g.C, ph, pw}, image.options().dtype(out_dtype));
  if (out.numel() == 0) return out;
  g.img = image.const_data_ptr();
  g.offs = offsets.const_data_ptr<int64_t>();
  g.out = out.data_ptr();
  g.mean = mean_c.defined() ? mean_c.const_data_ptr<float>() : nullptr;
  g.std_ = std_c.defined() ? std_c.const_data_ptr<float>() : nullptr;
  g.in_type = image.scalar_type();
  g.out_type = out_dtype;
  ZOOMKERN_CPU_CALL(gather_cpu_kernel, g);
  return out;
}

}  // namespace zoomkern
