// The CPU gather kernel proper (gather_cpu_vec.cpp), built once per CPU capability; gather_cpu.cpp
// checks the arguments and calls the build the CPU supports.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>

namespace zoomkern {

struct GatherArgs {
  const void* img;      // pixels at (b, c, y, x): img + b*sb + c*sc + y*sh + x*sw (elements of in_type)
  const int64_t* offs;  // (B, k, 2) contiguous top-left (y, x)
  void* out;            // (B, k, C, ph, pw) contiguous, out_type
  const float* mean;    // (C,) float32 or nullptr; rounded to out_type like the reference's mean.to(out)
  const float* std_;    // (C,) float32 or nullptr
  at::ScalarType in_type, out_type;
  int64_t B, C, H, W, k, ph, pw;
  int64_t sb, sc, sh, sw;  // image strides (elements) in logical (B, C, H, W) order
};

}  // namespace zoomkern
