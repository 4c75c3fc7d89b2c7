"""Build zoomkern, with the native extension zoomkern._C when it can be built.

Always installs. What gets built (one line printed says which, and why):
  * ZOOMKERN_NO_EXT=1, no torch at build time, or no C++ compiler: nothing native; the pure-PyTorch
    reference (and Triton) backends are used.
  * csrc/**/*.cu present, a CUDA toolkit (nvcc) and a CUDA build of torch (or FORCE_CUDA=1), and not
    ZOOMKERN_NO_CUDA=1: a CUDAExtension with the C++ and CUDA kernels (sm_80 and sm_90).
  * otherwise: a CppExtension with the C++/OpenMP CPU kernels.
The SIMD kernels csrc/**/*_cpu_vec.cpp are compiled once per CPU capability (generic, and AVX2+FMA on
x86-64) and linked into the same zoomkern._C; csrc/common/cpu_capability.h picks one at run time.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(ROOT, "csrc")


def _say(msg: str) -> None:
    print(f"zoomkern setup: {msg}", flush=True)


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _cxx_compiler() -> str | None:
    for cand in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if cand and shutil.which(cand.split()[0]):
            return cand
    return None


def _find_cuda_home() -> str | None:
    """CUDA_HOME as set, else the toolkit owning `nvcc`, else /usr/local/cuda.

    Torch's own guess (dirname of dirname of `which nvcc`) is wrong when nvcc is a wrapper script such as
    /usr/local/bin/nvcc, so a candidate only counts if it holds include/cuda_runtime.h and bin/nvcc.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    cands = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        cands.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    cands.append("/usr/local/cuda")
    for home in cands:
        if os.path.isfile(os.path.join(home, "include", "cuda_runtime.h")) and os.path.isfile(
            os.path.join(home, "bin", "nvcc")
        ):
            return home
    return None


# (name, extra flags) of each build of the *_cpu_vec.cpp sources; names are ATen's CPU_CAPABILITY values.
CPU_CAPABILITIES = [("DEFAULT", [])]
X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
if X86:
    # -mf16c as ATen's AVX2 build: c10::Half conversions use F16C instructions there (every AVX2 CPU has it).
    CPU_CAPABILITIES.append(("AVX2", ["-mavx2", "-mfma", "-mf16c"]))
# A third build, only for the vec files that opt in with a line containing ZOOMKERN_BUILD_AVX512 (code
# tuned for 8 lanes may gain nothing from 16): ATen's own flags for its AVX512 kernels. torch itself runs
# AVX512 kernels where the CPU has them, so an op that must match torch's speed needs this build.
AVX512 = ("AVX512", ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"])
AVX512_MARK = "ZOOMKERN_BUILD_AVX512"


def _wants_avx512(path: str) -> bool:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return X86 and AVX512_MARK in f.read()


def _vec_build_ext(base):
    """``base`` (torch's BuildExtension) plus the per-capability objects of the *_cpu_vec.cpp sources.

    One setuptools Extension has one set of flags, so the vec sources are not in ``ext.sources``: each
    is compiled here once per capability into build_temp/cpu_<cap>/ through the compiler torch has
    already set up (same include dirs, C++ standard, ABI and ninja), then linked as extra objects.
    This runs inside build_extension, so it works for ``pip install -e .`` and ``build_ext --inplace``.
    """

    class VecBuildExt(base):
        def build_extension(self, ext):
            vec = getattr(ext, "zoomkern_vec_sources", [])
            args = ext.extra_compile_args
            ext.extra_objects = list(getattr(ext, "zoomkern_extra_objects", ext.extra_objects))
            ext.zoomkern_extra_objects = list(ext.extra_objects)  # a second run must not link twice
            builds = [(cap, flags, vec) for cap, flags in CPU_CAPABILITIES]
            builds.append((*AVX512, [v for v in vec if _wants_avx512(v)]))
            for cap, flags, sources in builds:
                if not sources:
                    continue
                extra = ["-DCPU_CAPABILITY=" + cap, "-DCPU_CAPABILITY_" + cap, *flags]
                post = {**args, "cxx": args["cxx"] + extra} if isinstance(args, dict) else args + extra
                ext.extra_objects += self.compiler.compile(
                    sources,
                    output_dir=os.path.join(self.build_temp, "cpu_" + cap.lower()),
                    macros=ext.define_macros,
                    include_dirs=ext.include_dirs,
                    debug=self.debug,
                    extra_postargs=post,
                    depends=ext.depends,
                )
            super().build_extension(ext)

    return VecBuildExt


def _extensions():
    """(ext_modules, cmdclass) for what can be built here; prints the one-line decision."""
    if _flag("ZOOMKERN_NO_EXT"):
        _say("ZOOMKERN_NO_EXT=1: no native extension built; the reference backend will be used.")
        return [], {}
    if _cxx_compiler() is None:
        _say(
            "no C++ compiler found (CXX, c++, g++, clang++): no native extension built; "
            "the reference backend will be used."
        )
        return [], {}
    cu_files = sorted(glob.glob(os.path.join(CSRC, "**", "*.cu"), recursive=True))
    cuda_home = _find_cuda_home()
    if cuda_home and cu_files and not _flag("ZOOMKERN_NO_CUDA"):
        os.environ.setdefault("CUDA_HOME", cuda_home)  # must precede importing cpp_extension
    try:
        import torch
        from torch.utils import cpp_extension as ce
    except ImportError as err:
        _say(
            f"torch not importable at build time ({err}); no native extension built; "
            "the reference backend will be used (install with --no-build-isolation)."
        )
        return [], {}

    all_cpp = sorted(glob.glob(os.path.join(CSRC, "**", "*.cpp"), recursive=True))
    vec_files = [p for p in all_cpp if p.endswith("_cpu_vec.cpp")]
    cpp_files = [p for p in all_cpp if p not in vec_files]
    headers = sorted(glob.glob(os.path.join(CSRC, "**", "*.h"), recursive=True))
    rel = lambda paths: [os.path.relpath(p, ROOT) for p in paths]
    # -g0 overrides the -g from Python's sysconfig: debug info made the .so 11 MB and compiles ~30% slower.
    cxx_flags = ["-O3", "-fopenmp", "-g0"]  # torch picks the C++ standard (C++20 for torch 2.14)
    caps = [cap for cap, _ in CPU_CAPABILITIES]
    if "AVX2" in caps and vec_files:
        cxx_flags.append("-DZOOMKERN_HAVE_AVX2_BUILD")  # lets cpu_capability.h call the AVX2 build
    avx512_files = [p for p in vec_files if _wants_avx512(p)]
    if avx512_files:
        cxx_flags.append("-DZOOMKERN_HAVE_AVX512_BUILD")  # ZOOMKERN_CPU_CALL_AVX512 may call it
        caps.append(f"AVX512 ({len(avx512_files)} opted in)")
    want_cuda = bool(cu_files) and not _flag("ZOOMKERN_NO_CUDA")
    have_cuda = want_cuda and (_flag("FORCE_CUDA") or (torch.version.cuda is not None and ce.CUDA_HOME))
    if have_cuda:
        include_dirs = [CSRC]
        # pip's CUDA wheels put headers (cccl, cublas...) beside torch; nvcc does not look there itself.
        nv_inc = os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), "nvidia", "cu13", "include")
        if os.path.isdir(nv_inc):
            include_dirs.append(nv_inc)
        nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-DZOOMKERN_WITH_CUDA"]
        nvcc_flags += ["-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90"]
        ext = ce.CUDAExtension(
            "zoomkern._C",
            rel(cpp_files + cu_files),
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags + ["-DZOOMKERN_WITH_CUDA"], "nvcc": nvcc_flags},
            extra_link_args=["-fopenmp"],
        )
        _say(
            "building zoomkern._C with CPU (OpenMP) and CUDA kernels "
            f"(sm_80, sm_90; CUDA_HOME={ce.CUDA_HOME})."
        )
    else:
        why = (
            "ZOOMKERN_NO_CUDA=1"
            if cu_files and _flag("ZOOMKERN_NO_CUDA")
            else "no csrc/**/*.cu sources"
            if not cu_files
            else "no CUDA toolkit or CPU-only torch"
        )
        ext = ce.CppExtension(
            "zoomkern._C",
            rel(cpp_files),
            include_dirs=[CSRC],
            extra_compile_args=cxx_flags,
            extra_link_args=["-fopenmp"],
        )
        _say(f"building zoomkern._C with CPU (OpenMP) kernels only; CUDA kernels skipped ({why}).")
    # Not in ext.sources: VecBuildExt compiles these once per capability. Listed in depends (with the
    # headers) so that editing one relinks the extension.
    ext.zoomkern_vec_sources = rel(vec_files)
    ext.depends = rel(vec_files + headers)
    _say(f"SIMD kernels ({len(vec_files)} *_cpu_vec.cpp) built for CPU capabilities: {', '.join(caps)}.")
    base = ce.BuildExtension.with_options(use_ninja=True)
    return [ext], {"build_ext": _vec_build_ext(base)}


ext_modules, cmdclass = _extensions()

setup(
    packages=find_packages(include=["zoomkern*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
