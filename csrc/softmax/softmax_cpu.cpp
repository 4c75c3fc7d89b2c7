// Spatial softmax over rows of (B, N) logits with temperature, label smoothing, mask and entropy:
// argument checks and the registration-facing entry points. The kernels themselves are SIMD code in
// softmax_cpu_vec.cpp, built once per CPU capability; ZOOMKERN_CPU_CALL picks the build at run time.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>

#include "../common/ops.h"
#include "softmax_cpu_vec.h"

namespace zoomkern {
namespace {

void check_rows(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.dim() == 2, op, ": ", name, " must be 2-D (B, N), got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

const bool* mask_ptr(const std::optional<at::Tensor>& mask, const at::Tensor& like, const char* op,
                     at::Tensor& holder) {
  if (!mask.has_value()) return nullptr;
  TORCH_CHECK(mask->scalar_type() == at::kBool, op, ": mask must be bool, got ", mask->scalar_type());
  TORCH_CHECK(mask->device().is_cpu(), op, ": mask must be a CPU tensor, got ", mask->device());
  TORCH_CHECK(mask->sizes() == like.sizes(), op, ": mask shape ", mask->sizes(), " must equal ",
              like.sizes());
  holder = mask->contiguous();
  return holder.data_ptr<bool>();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> softmax_fwd_cpu(const at::Tensor& x_in, const std::optional<at::Tensor>& mask,
                                                   double temperature, double smoothing) {
  check_rows(x_in, "softmax_fwd", "x");
  TORCH_CHECK(temperature > 0.0, "softmax_fwd: temperature must be > 0, got ", temperature);
  TORCH_CHECK(smoothing >= 0.0 && smoothing <= 1.0, "softmax_fwd: smoothing must be in [0, 1], got ", smoothing);
  const at::Tensor x = x_in.contiguous();
  at::Tensor mask_c;
  const bool* m = mask_ptr(mask, x, "softmax_fwd", mask_c);
  const int64_t B = x.size(0), N = x.size(1);
  at::Tensor p = at::empty_like(x);
  at::Tensor ent = at::empty({B}, x.options());
  if (B == 0 || N == 0) return {p, ent.fill_(0)};
  ZOOMKERN_CPU_CALL_AVX512(softmax_fwd_kernel, x, m, p, ent, temperature, smoothing);
  return {p, ent};
}

at::Tensor softmax_bwd_cpu(const at::Tensor& p_in, const at::Tensor& grad_p_in, const at::Tensor& grad_ent_in,
                           const std::optional<at::Tensor>& mask, double temperature, double smoothing) {
  check_rows(p_in, "softmax_bwd", "p");
  TORCH_CHECK(grad_p_in.sizes() == p_in.sizes() && grad_p_in.scalar_type() == p_in.scalar_type(),
              "softmax_bwd: grad_p must match p in shape and dtype, got ", grad_p_in.sizes(), " ",
              grad_p_in.scalar_type());
  TORCH_CHECK(grad_ent_in.dim() == 1 && grad_ent_in.size(0) == p_in.size(0) &&
                  grad_ent_in.scalar_type() == p_in.scalar_type(),
              "softmax_bwd: grad_ent must be (B,) of p's dtype, got ", grad_ent_in.sizes(), " ",
              grad_ent_in.scalar_type());
  TORCH_CHECK(grad_p_in.device().is_cpu() && grad_ent_in.device().is_cpu(),
              "softmax_bwd: grad_p and grad_ent must be CPU tensors");
  TORCH_CHECK(temperature > 0.0, "softmax_bwd: temperature must be > 0, got ", temperature);
  TORCH_CHECK(smoothing >= 0.0 && smoothing <= 1.0, "softmax_bwd: smoothing must be in [0, 1], got ", smoothing);
  const at::Tensor p = p_in.contiguous(), gp = grad_p_in.contiguous(), ge = grad_ent_in.contiguous();
  at::Tensor mask_c;
  const bool* m = mask_ptr(mask, p, "softmax_bwd", mask_c);
  const int64_t B = p.size(0), N = p.size(1);
  // s >= 1: the probabilities are constant in the logits.
  if (smoothing >= 1.0 || B == 0 || N == 0) return at::zeros_like(p);
  at::Tensor gx = at::empty_like(p);
  ZOOMKERN_CPU_CALL_AVX512(softmax_bwd_kernel, p, gp, ge, m, gx, temperature, smoothing);
  return gx;
}

}  // namespace zoomkern
