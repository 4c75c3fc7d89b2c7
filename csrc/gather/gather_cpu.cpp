// Patch gather: (B, C, H, W) or (B, H, W, C) image with ARBITRARY strides -> (B, k, C, ph, pw) patches.
//
// One task per output row (b, patch, row); every task covers all channels and writes its own disjoint
// output, so results never depend on the thread count. Only the patch pixels are read (a huge,
// non-contiguous or memory-mapped image is never copied). Pixels outside the image are 0 before
// normalisation. Conversion and normalisation follow the reference op by op: value.to(out), then
// - mean.to(out), then / std.to(out), each rounded to out_t (so half/bfloat16 match bit for bit).
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/TypeCast.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "../common/dispatch.h"
#include "../common/ops.h"

namespace zoomkern {
namespace {

struct Geometry {
  int64_t B, C, H, W, k, ph, pw;
  int64_t sb, sc, sh, sw;  // image strides (elements) in logical (B, C, H, W) order
};

template <typename out_t>
inline out_t normalise(out_t v, const out_t* mean, const out_t* std_, int64_t c) {
  using opmath_t = at::opmath_type<out_t>;
  if (mean) v = static_cast<out_t>(static_cast<opmath_t>(v) - static_cast<opmath_t>(mean[c]));
  if (std_) v = static_cast<out_t>(static_cast<opmath_t>(v) / static_cast<opmath_t>(std_[c]));
  return v;
}

template <typename in_t, typename out_t>
void gather_kernel(const in_t* img, const int64_t* offs, out_t* out, const Geometry& g, const out_t* mean,
                   const out_t* std_) {
  const bool norm = mean || std_;
  std::vector<out_t> fill(g.C, out_t(0));
  for (int64_t c = 0; c < g.C; ++c) fill[c] = normalise<out_t>(out_t(0), mean, std_, c);
  // memcpy rows when nothing is converted and the row is contiguous in the image (CHW with stride-1 W).
  const bool raw_copy = std::is_same<in_t, out_t>::value && !norm && g.sw == 1;
  const int64_t rows = g.B * g.k * g.ph;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, g.C * g.pw));
  at::parallel_for(0, rows, grain, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t r = w % g.ph;
      const int64_t bi = w / g.ph;  // b * k + i
      const int64_t b = bi / g.k;
      // Clamping keeps which rows/columns are inside unchanged and rules out int64 overflow below.
      const int64_t oy = std::min(std::max(offs[bi * 2 + 0], -g.ph), g.H);
      const int64_t ox = std::min(std::max(offs[bi * 2 + 1], -g.pw), g.W);
      const int64_t y = oy + r;
      const bool row_in = y >= 0 && y < g.H;
      // Columns t in [t0, t1) of the patch fall inside the image.
      const int64_t t0 = row_in ? std::min(g.pw, std::max<int64_t>(0, -ox)) : g.pw;
      const int64_t t1 = row_in ? std::max(t0, std::min(g.pw, g.W - ox)) : g.pw;
      for (int64_t c = 0; c < g.C; ++c) {
        out_t* dst = out + ((bi * g.C + c) * g.ph + r) * g.pw;
        for (int64_t t = 0; t < t0; ++t) dst[t] = fill[c];
        for (int64_t t = t1; t < g.pw; ++t) dst[t] = fill[c];
        if (t1 <= t0) continue;
        const in_t* src = img + b * g.sb + c * g.sc + y * g.sh + (ox + t0) * g.sw;
        if (raw_copy) {
          std::memcpy(dst + t0, src, sizeof(out_t) * (t1 - t0));
        } else if (!norm) {
          for (int64_t t = t0; t < t1; ++t) dst[t] = c10::convert<out_t>(src[(t - t0) * g.sw]);
        } else {
          for (int64_t t = t0; t < t1; ++t)
            dst[t] = normalise<out_t>(c10::convert<out_t>(src[(t - t0) * g.sw]), mean, std_, c);
        }
      }
    }
  });
}

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
  Geometry g;
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
  const at::Tensor offsets = offsets_in.contiguous();
  at::Tensor out = at::empty({g.B, g.k, g.C, ph, pw}, image.options().dtype(out_dtype));
  if (out.numel() == 0) return out;
  dispatch_pixel_type(image.scalar_type(), "image", [&](auto in_tag) {
    using in_t = typename decltype(in_tag)::type;
    dispatch_pixel_type(out_dtype, "out_dtype", [&](auto out_tag) {
      using out_t = typename decltype(out_tag)::type;
      // mean/std rounded to out_t first, as the reference's mean.to(out_dtype) does.
      std::vector<out_t> mean_o, std_o;
      if (mean_c.defined())
        for (int64_t c = 0; c < g.C; ++c) mean_o.push_back(c10::convert<out_t>(mean_c.data_ptr<float>()[c]));
      if (std_c.defined())
        for (int64_t c = 0; c < g.C; ++c) std_o.push_back(c10::convert<out_t>(std_c.data_ptr<float>()[c]));
      gather_kernel<in_t, out_t>(static_cast<const in_t*>(image.const_data_ptr()), offsets.data_ptr<int64_t>(),
                                 static_cast<out_t*>(out.data_ptr()), g, mean_o.empty() ? nullptr : mean_o.data(),
                                 std_o.empty() ? nullptr : std_o.data());
    });
  });
  return out;
}

}  // namespace zoomkern
