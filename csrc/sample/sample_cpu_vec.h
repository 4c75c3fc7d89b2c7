// The SIMD sampling kernels (sample_cpu_vec.cpp), declared for every capability build.
// Arguments are checked by sample_cpu.cpp: contiguous (B, N) float32/float64 probs, B, N, k > 0, out (B, k)
// int64, without replacement k <= N. Returns false when a probability is NaN or negative (found in the
// kernel's own pass over them; the indices are then unspecified and the caller raises).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "../common/cpu_capability.h"

ZOOMKERN_CPU_VARIANTS(bool, sample_kernel,
                      (const at::Tensor& probs, int64_t k, bool replace, uint32_t s0, uint32_t s1, at::Tensor& out))
