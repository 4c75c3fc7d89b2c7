// Declarations of the CPU kernels registered in csrc/ops.cpp (schemas in notes/HELPERS.md).
// CUDA sources register their own TORCH_LIBRARY_IMPL(zoomkern_C, CUDA, m) blocks, so a .cu file can
// be added without touching this header or ops.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string_view>
#include <tuple>

namespace zoomkern {

std::tuple<at::Tensor, at::Tensor> softmax_fwd_cpu(const at::Tensor& x, const std::optional<at::Tensor>& mask,
                                                   double temperature, double smoothing);

at::Tensor softmax_bwd_cpu(const at::Tensor& p, const at::Tensor& grad_p, const at::Tensor& grad_ent,
                           const std::optional<at::Tensor>& mask, double temperature, double smoothing);

at::Tensor sample_cpu(const at::Tensor& probs, int64_t k, bool replace, const at::Tensor& seed);

at::Tensor gather_cpu(const at::Tensor& image, const at::Tensor& offsets, int64_t ph, int64_t pw,
                      c10::string_view layout, at::ScalarType out_dtype, const std::optional<at::Tensor>& mean,
                      const std::optional<at::Tensor>& std_);

}  // namespace zoomkern
