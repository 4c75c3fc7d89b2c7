// Run-time choice between the builds of the SIMD kernels (csrc/<op>/<op>_cpu_vec.cpp).
//
// setup.py compiles every *_cpu_vec.cpp twice, as ATen does for its own kernels: once generic
// (-DCPU_CAPABILITY=DEFAULT, at::vec::Vectorized falls back to plain loops) and, on x86-64, once with
// -mavx2 -mfma (-DCPU_CAPABILITY=AVX2, 8 float lanes). The code of such a file lives in
// namespace zoomkern::CPU_CAPABILITY, so the two builds define zoomkern::DEFAULT::f and
// zoomkern::AVX2::f side by side in one zoomkern._C. The ordinary <op>_cpu.cpp declares both with
// ZOOMKERN_CPU_VARIANTS and calls ZOOMKERN_CPU_CALL, which takes the AVX2 build only when the CPU has
// AVX2 and FMA and the environment does not say ZOOMKERN_CPU_CAPABILITY=default.
#pragma once

#include <cstdlib>
#include <cstring>

namespace zoomkern {

// setup.py defines ZOOMKERN_HAVE_AVX2_BUILD for every source when it compiled the AVX2 objects.
inline bool cpu_supports_avx2() {
#if defined(ZOOMKERN_HAVE_AVX2_BUILD) && (defined(__x86_64__) || defined(__i386__))
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                        __builtin_cpu_supports("f16c");  // setup.py builds AVX2 with -mf16c
  return ok;
#else
  return false;
#endif
}

// Read on every call (a getenv is ~50 ns, nothing next to a kernel), so tests can switch builds
// per test by setting the variable; only "default" is recognised, anything else means "best available".
inline bool cpu_has_avx2() {
  if (!cpu_supports_avx2()) return false;
  const char* env = std::getenv("ZOOMKERN_CPU_CAPABILITY");
  return !(env && (std::strcmp(env, "default") == 0 || std::strcmp(env, "DEFAULT") == 0));
}

// The capability the kernels use now: "AVX2" or "DEFAULT".
inline const char* cpu_capability() { return cpu_has_avx2() ? "AVX2" : "DEFAULT"; }

}  // namespace zoomkern

// Declares `ret name params` in both capability namespaces (use at namespace scope, outside zoomkern).
#if defined(ZOOMKERN_HAVE_AVX2_BUILD)
#define ZOOMKERN_CPU_VARIANTS(ret, name, params) \
  namespace zoomkern {                           \
  namespace DEFAULT {                            \
  ret name params;                               \
  }                                              \
  namespace AVX2 {                               \
  ret name params;                               \
  }                                              \
  }
#define ZOOMKERN_CPU_CALL(name, ...)                                               \
  (::zoomkern::cpu_has_avx2() ? ::zoomkern::AVX2::name(__VA_ARGS__) \
                              : ::zoomkern::DEFAULT::name(__VA_ARGS__))
#else
#define ZOOMKERN_CPU_VARIANTS(ret, name, params) \
  namespace zoomkern {                           \
  namespace DEFAULT {                            \
  ret name params;                               \
  }                                              \
  }
#define ZOOMKERN_CPU_CALL(name, ...) (::zoomkern::DEFAULT::name(__VA_ARGS__))
#endif
