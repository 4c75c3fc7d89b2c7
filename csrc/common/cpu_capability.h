// Run-time choice between the builds of the SIMD kernels (csrc/<op>/<op>_cpu_vec.cpp).
//
// setup.py compiles every *_cpu_vec.cpp twice, as ATen does for its own kernels: once generic
// (-DCPU_CAPABILITY=DEFAULT, at::vec::Vectorized falls back to plain loops) and, on x86-64, once with
// -mavx2 -mfma (-DCPU_CAPABILITY=AVX2, 8 float lanes). The code of such a file lives in
// namespace zoomkern::CPU_CAPABILITY, so the two builds define zoomkern::DEFAULT::f and
// zoomkern::AVX2::f side by side in one zoomkern._C. The ordinary <op>_cpu.cpp declares both with
// ZOOMKERN_CPU_VARIANTS and calls ZOOMKERN_CPU_CALL, which takes the AVX2 build only when the CPU has
// AVX2 and FMA and the environment does not say ZOOMKERN_CPU_CAPABILITY=default.
// A vec file that also wants an AVX-512 build (16 float lanes, what torch's own kernels use on such CPUs)
// says so with a line containing ZOOMKERN_BUILD_AVX512, and is declared and called with
// ZOOMKERN_CPU_VARIANTS_AVX512 / ZOOMKERN_CPU_CALL_AVX512; ZOOMKERN_CPU_CAPABILITY=avx2 caps it at AVX2.
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

// setup.py defines ZOOMKERN_HAVE_AVX512_BUILD when at least one vec file opted into the AVX-512 build.
inline bool cpu_supports_avx512() {
#if defined(ZOOMKERN_HAVE_AVX512_BUILD) && (defined(__x86_64__) || defined(__i386__))
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

// ZOOMKERN_CPU_CAPABILITY is read on every call (a getenv is ~50 ns, nothing next to a kernel), so tests
// can switch builds per test: "default" forces the generic build, "avx2" caps at AVX2; anything else
// (or unset) means the best this CPU and build allow.
inline bool cpu_env_is(const char* lower, const char* upper) {
  const char* env = std::getenv("ZOOMKERN_CPU_CAPABILITY");
  return env && (std::strcmp(env, lower) == 0 || std::strcmp(env, upper) == 0);
}

inline bool cpu_has_avx2() { return cpu_supports_avx2() && !cpu_env_is("default", "DEFAULT"); }

inline bool cpu_has_avx512() {
  return cpu_supports_avx512() && !cpu_env_is("default", "DEFAULT") && !cpu_env_is("avx2", "AVX2");
}

// The best capability the kernels use now: "AVX512" (only the ops built for it), "AVX2" or "DEFAULT".
inline const char* cpu_capability() {
  return cpu_has_avx512() ? "AVX512" : cpu_has_avx2() ? "AVX2" : "DEFAULT";
}

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

// The same for the vec files that opt into the AVX-512 build (ZOOMKERN_BUILD_AVX512).
#if defined(ZOOMKERN_HAVE_AVX512_BUILD)
#define ZOOMKERN_CPU_VARIANTS_AVX512(ret, name, params) \
  ZOOMKERN_CPU_VARIANTS(ret, name, params)              \
  namespace zoomkern {                                  \
  namespace AVX512 {                                    \
  ret name params;                                      \
  }                                                     \
  }
#define ZOOMKERN_CPU_CALL_AVX512(name, ...) \
  (::zoomkern::cpu_has_avx512() ? ::zoomkern::AVX512::name(__VA_ARGS__) : ZOOMKERN_CPU_CALL(name, __VA_ARGS__))
#else
#define ZOOMKERN_CPU_VARIANTS_AVX512(ret, name, params) ZOOMKERN_CPU_VARIANTS(ret, name, params)
#define ZOOMKERN_CPU_CALL_AVX512(name, ...) ZOOMKERN_CPU_CALL(name, __VA_ARGS__)
#endif
