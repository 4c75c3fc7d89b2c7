"""Backend selection as data.

Each backend answers ``why_not(op, device)`` with ``None`` (it can run) or a reason. Auto-selection
walks ``ORDER`` and takes the first that can run; ``ZOOMKERN_BACKEND=<name>`` forces one and raises
if it cannot. Every backend module exposes the kernel-level functions of ``reference.py``:
``softmax_fwd``, ``softmax_bwd``, ``sample``, ``gather``.
"""

from __future__ import annotations

import functools
import os
import types

import torch

ORDER = ("cuda", "triton", "cpu", "reference")
OPS = ("softmax_fwd", "softmax_bwd", "sample", "gather")


class BackendError(RuntimeError):
    """No backend can run the inputs; the message lists every backend with its reason."""


@functools.cache
def _ext():
    """(module, None) if zoomkern._C imports, else (None, reason). Cached: one attempt, one warning."""
    return load_extension(os.path.dirname(os.path.abspath(__file__)), __package__ + "._C")


def built_extensions(pkg_dir: str) -> list[str]:
    """The files in ``pkg_dir`` that Python would import as ``_C`` (any ABI tag of this interpreter)."""
    import importlib.machinery

    names = ("_C" + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES)
    return [p for p in (os.path.join(pkg_dir, n) for n in names) if os.path.isfile(p)]


def load_extension(pkg_dir: str, name: str):
    """Import the extension ``name`` that lives in ``pkg_dir``: (module, None) or (None, reason).

    Not built (ZOOMKERN_NO_EXT=1, no compiler) is silent: the reference backend is the intended fallback.
    A file that is there but does not load (built against another torch or Python: an ABI mismatch, a
    missing library) warns: otherwise every op would quietly run the slow reference kernels.
    """
    import importlib

    try:
        return importlib.import_module(name), None  # importing registers torch.ops.zoomkern_C
    except ImportError as e:
        files = built_extensions(pkg_dir)
        if not files:
            return None, f"zoomkern._C is not built ({e})"
        import warnings

        warnings.warn(
            f"{files[0]} exists but does not load ({type(e).__name__}: {e}); zoomkern falls back to the "
            "slower reference/triton kernels. Rebuild it against this torch: `make build`, or "
            "`pip install --no-build-isolation -e .` in the checkout (then `python -m zoomkern.info`).",
            RuntimeWarning,
            stacklevel=2,
        )
        return None, f"zoomkern._C failed to load ({files[0]}: {e}); rebuild it"


def ext_has_cuda() -> bool:
    """True when zoomkern._C registered a CUDA kernel (csrc/**/*.cu was compiled in)."""
    mod, _ = _ext()
    return mod is not None and torch._C._dispatch_has_kernel_for_dispatch_key("zoomkern_C::gather", "CUDA")


@functools.cache
def _triton():
    try:
        from . import triton as zt

        return zt, None
    except Exception as e:  # triton missing or too old
        return None, f"triton is unavailable ({type(e).__name__}: {e})"


@functools.cache
def _ops_module(ns: str) -> types.SimpleNamespace:
    lib = getattr(torch.ops, ns)
    return types.SimpleNamespace(
        softmax_fwd=lambda x, mask, t, s: tuple(lib.softmax_fwd(x, mask, t, s)),
        softmax_bwd=lib.softmax_bwd,
        sample=lib.sample,
        gather=lib.gather,
    )


def why_not(name: str, op: str, device: torch.device) -> str | None:
    """None if backend ``name`` can run ``op`` on tensors of ``device``; else the reason."""
    dev = torch.device(device).type
    if name == "reference":
        return None
    if name == "cpu":
        _, err = _ext()
        if err:
            return err
        return None if dev == "cpu" else f"tensors are on {dev}, the cpu backend needs CPU tensors"
    if name == "cuda":
        if dev != "cuda":
            return f"tensors are on {dev}, not CUDA"
        _, err = _ext()
        if err:
            return err
        if not ext_has_cuda():
            return "zoomkern._C was built without CUDA kernels"
        if op != "gather":
            return f"no CUDA kernel for {op} (the triton backend covers it)"
        return None
    if name == "triton":
        zt, err = _triton()
        if err:
            return err
        reason = zt.device_reason(device)
        if reason:
            return reason
        if dev == "cpu" and _forced() != "triton":
            # Interpreted kernels are for tests: auto-selection prefers the C++ kernels on CPU.
            return "interpreted triton runs only when forced with ZOOMKERN_BACKEND=triton"
        return None
    return f"unknown backend {name!r}"


def _forced() -> str | None:
    name = os.environ.get("ZOOMKERN_BACKEND", "").strip().lower()
    return name or None


def module(name: str):
    if name == "reference":
        from . import reference

        return reference
    if name in ("cpu", "cuda"):
        return _ops_module("zoomkern_C")
    if name == "triton":
        return _triton()[0]
    raise BackendError(f"unknown backend {name!r}; choose one of {ORDER}")


def select(op: str, device: torch.device) -> tuple[str, object]:
    """The backend that runs ``op`` for tensors on ``device``: (name, kernel module).

    Every op call asks, so the answer is cached per (op, device, ZOOMKERN_BACKEND): what decides it (the
    extension, triton, the interpreter flag) is fixed once imported, and the walk costs ~10 us.
    """
    dev = device if isinstance(device, torch.device) else torch.device(device)
    return _select(op, dev, _forced())


@functools.lru_cache(maxsize=256)
def _select(op: str, device: torch.device, forced: str | None) -> tuple[str, object]:
    if forced is not None:
        if forced not in ORDER:
            raise BackendError(f"ZOOMKERN_BACKEND={forced!r} is not one of {ORDER}")
        reason = why_not(forced, op, device)
        if reason:
            raise BackendError(f"ZOOMKERN_BACKEND={forced} cannot run {op} on {device}: {reason}")
        return forced, module(forced)
    reasons = []
    for name in ORDER:
        reason = why_not(name, op, device)
        if reason is None:
            return name, module(name)
        reasons.append(f"  {name}: {reason}")
    raise BackendError(f"no backend can run {op} on {device}:\n" + "\n".join(reasons))


def report(device: str = "cpu") -> dict[str, dict[str, str]]:
    """{backend: {op: 'ok' or reason}} for tensors on ``device``."""
    return {name: {op: why_not(name, op, device) or "ok" for op in OPS} for name in ORDER}
