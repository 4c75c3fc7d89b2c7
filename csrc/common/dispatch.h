// The pixel types of the gather, shared by the CPU and CUDA kernels. at::AT_DISPATCH_* has no uint16
// case, and both sides must accept exactly these six types.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace zoomkern {

template <typename T>
struct Tag {
  using type = T;
};

template <typename F>
void dispatch_pixel_type(at::ScalarType t, const char* what, F&& f) {
  switch (t) {
    case at::kByte: return f(Tag<uint8_t>{});
    case at::kUInt16: return f(Tag<uint16_t>{});
    case at::kHalf: return f(Tag<at::Half>{});
    case at::kBFloat16: return f(Tag<at::BFloat16>{});
    case at::kFloat: return f(Tag<float>{});
    case at::kDouble: return f(Tag<double>{});
    default:
      TORCH_CHECK(false, "gather: ", what, " must be uint8, uint16, float16, bfloat16, float32 or float64, got ",
                  t);
  }
}

}  // namespace zoomkern
