"""The Triton backend: kernel-level ``softmax_fwd``, ``softmax_bwd``, ``sample``, ``gather``.

Triton decides at ``@triton.jit`` time (module import) whether kernels are compiled or interpreted
(``TRITON_INTERPRET=1``), so ``INTERPRETED`` records what this import got. Interpreted kernels run on CPU
tensors (slowly; for tests); compiled ones need CUDA tensors.
"""

from __future__ import annotations

import torch
import triton

from .gather import _gather_patches_kernel, gather
from .sample import _sample_patches_kernel, _sample_replace_kernel, sample
from .softmax import _spatial_softmax_bwd_kernel, _spatial_softmax_fwd_kernel, softmax_bwd, softmax_fwd

INTERPRETED = not isinstance(_spatial_softmax_fwd_kernel, triton.runtime.JITFunction)

KERNELS = {
    "_spatial_softmax_fwd_kernel": _spatial_softmax_fwd_kernel,
    "_spatial_softmax_bwd_kernel": _spatial_softmax_bwd_kernel,
    "_sample_patches_kernel": _sample_patches_kernel,
    "_sample_replace_kernel": _sample_replace_kernel,
    "_gather_patches_kernel": _gather_patches_kernel,
}

FLOATS = (torch.float32, torch.float64)
IMAGE_DTYPES = (torch.uint8, torch.uint16, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def device_reason(device) -> str | None:
    """None if kernels can run on tensors of ``device``, else why not."""
    dev = torch.device(device).type
    if INTERPRETED:
        return (
            None
            if dev == "cpu"
            else f"triton kernels were interpreted (TRITON_INTERPRET=1) but tensors are on {dev}"
        )
    if dev != "cuda":
        return (
            f"tensors are on {dev}, not a CUDA device, and TRITON_INTERPRET was not 1 "
            "when zoomkern.triton was imported"
        )
    return None


def supports(op: str, *tensors: torch.Tensor, out_dtype: torch.dtype | None = None) -> str | None:
    """None if this backend can run ``op`` on these kernel-level inputs, else a reason.

    softmax_fwd/softmax_bwd/sample: the first tensor is x / p / probs; gather: (image, offsets).
    """
    if not tensors:
        return "no tensors given"
    t = tensors[0]
    reason = device_reason(t.device)
    if reason:
        return reason
    if op in ("softmax_fwd", "softmax_bwd", "sample"):
        if t.dtype not in FLOATS:
            return f"{op} needs float32/float64 inputs, got {t.dtype}"
        return None
    if op == "gather":
        if t.dtype not in IMAGE_DTYPES:
            return f"gather does not read {t.dtype} images"
        if out_dtype is not None and out_dtype not in IMAGE_DTYPES:
            return f"gather does not write {out_dtype}"
        return None
    return f"unknown op {op!r}"


__all__ = [
    "softmax_fwd",
    "softmax_bwd",
    "sample",
    "gather",
    "supports",
    "device_reason",
    "INTERPRETED",
    "KERNELS",
]
