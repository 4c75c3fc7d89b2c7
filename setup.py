"""Build zoomkern, with the native extension zoomkern._C when it can be built.

Always installs. What gets built (one line printed says which, and why):
  * ZOOMKERN_NO_EXT=1, no torch at build time, or no C++ compiler: nothing native; the pure-PyTorch
    reference (and Triton) backends are used.
  * csrc/**/*.cu present, a CUDA toolkit (nvcc) and a CUDA build of torch (or FORCE_CUDA=1), and not
    ZOOMKERN_NO_CUDA=1: a CUDAExtension with the C++ and CUDA kernels (sm_80 and sm_90).
  * otherwise: a CppExtension with the C++/OpenMP CPU kernels.
"""

from __future__ import annotations

import glob
import os
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

    cpp_files = sorted(glob.glob(os.path.join(CSRC, "**", "*.cpp"), recursive=True))
    rel = lambda paths: [os.path.relpath(p, ROOT) for p in paths]
    # -g0 overrides the -g from Python's sysconfig: debug info made the .so 11 MB and compiles ~30% slower.
    cxx_flags = ["-O3", "-fopenmp", "-g0"]  # torch picks the C++ standard (C++20 for torch 2.14)
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
    return [ext], {"build_ext": ce.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()

setup(
    packages=find_packages(include=["zoomkern*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
