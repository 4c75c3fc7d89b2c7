"""Tolerances: one table per dtype (fp16/bf16 loose enough for PyTorch's own rounding x2)."""

import torch

TOL = {
    torch.float64: dict(atol=1e-10, rtol=1e-9),
    torch.float32: dict(atol=1e-6, rtol=1e-5),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
    torch.bfloat16: dict(atol=1.6e-2, rtol=1.6e-2),
}


def close(actual, expected, dtype=None, what=""):
    dtype = dtype or expected.dtype
    torch.testing.assert_close(actual, expected, **TOL[dtype], msg=lambda m: f"{what}: {m}")
