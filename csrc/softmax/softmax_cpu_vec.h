// The SIMD softmax kernels (softmax_cpu_vec.cpp), declared for every capability build.
// Arguments are checked by softmax_cpu.cpp: contiguous (B, N) float32/float64, B, N > 0, mask (B, N) or null.
#pragma once

#include <ATen/core/Tensor.h>

#include "../common/cpu_capability.h"

ZOOMKERN_CPU_VARIANTS_AVX512(void, softmax_fwd_kernel,
                      (const at::Tensor& x, const bool* mask, at::Tensor& p, at::Tensor& ent, double temperature,
                       double smoothing))
ZOOMKERN_CPU_VARIANTS_AVX512(void, softmax_bwd_kernel,
                      (const at::Tensor& p, const at::Tensor& grad_p, const at::Tensor& grad_ent, const bool* mask,
                       at::Tensor& grad_x, double temperature, double smoothing))
