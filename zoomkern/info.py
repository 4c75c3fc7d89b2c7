"""``python -m zoomkern.info``: what was built and which backend runs each op here."""

from __future__ import annotations

import os
import platform

import torch

from . import backends


def cpu_capability(mod) -> str:
    """Which build of csrc/**/*_cpu_vec.cpp runs now (AVX2 or DEFAULT), and why."""
    if not mod:
        return "none (no extension)"
    try:
        cap = torch.ops.zoomkern_C.cpu_capability()
    except (AttributeError, RuntimeError):
        return "unknown (extension built before per-capability SIMD builds: rebuild)"
    env = os.environ.get("ZOOMKERN_CPU_CAPABILITY")
    why = f"ZOOMKERN_CPU_CAPABILITY={env}" if env else "best this CPU and build allow"
    return (
        f"{cap} ({why}; AVX512 only for the ops built for it, the others use AVX2; "
        "ZOOMKERN_CPU_CAPABILITY=avx2 caps at AVX2, =default forces the generic build)"
    )


def main() -> None:
    mod, err = backends._ext()
    version = __import__("zoomkern").__version__
    print(f"zoomkern {version}  torch {torch.__version__}  python {platform.python_version()}")
    try:
        import triton

        print(f"triton {triton.__version__}")
    except ImportError:
        print("triton: not installed")
    print(f"extension zoomkern._C: {'built' if mod else err}; CUDA kernels: {backends.ext_has_cuda()}")
    print(f"CPU SIMD capability of the C++ kernels: {cpu_capability(mod)}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        print(f"\nbackends for {dev} tensors (order of preference):")
        for name, ops in backends.report(dev).items():
            for op, why in ops.items():
                print(f"  {name:9s} {op:12s} {why}")
        for op in backends.OPS:
            try:
                chosen, _ = backends.select(op, torch.device(dev))
            except backends.BackendError as e:
                chosen = f"none ({e})"
            print(f"  -> {op}: {chosen}")


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # `python -m zoomkern.info | head` is fine
        pass
