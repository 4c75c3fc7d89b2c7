"""Argument checks shared by the ops: every message names the argument."""

from __future__ import annotations

import torch

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tensor(name: str, x, *, dtypes=None, min_dim: int | None = None, dim: int | None = None):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if dtypes is not None and x.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} has dtype {str(x.dtype).replace('torch.', '')}; expected one of {allowed}")
    if dim is not None and x.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimensions, got shape {tuple(x.shape)}")
    if min_dim is not None and x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions, got shape {tuple(x.shape)}")


def same_device(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor):
    if x.device != ref.device:
        raise ValueError(f"{name} is on {x.device} but {ref_name} is on {ref.device}")


def positive_pair(name: str, v) -> tuple[int, int]:
    try:
        a, b = (int(t) for t in v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of ints, got {v!r}") from None
    if a <= 0 or b <= 0:
        raise ValueError(f"{name} must be positive, got {(a, b)}")
    return a, b


def finite_number(name: str, v, *, lo=None, hi=None, lo_open=False) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {v!r}") from None
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {f}")
    if lo is not None and (f < lo or (lo_open and f == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {f}")
    if hi is not None and f > hi:
        raise ValueError(f"{name} must be <= {hi}, got {f}")
    return f


def data_check(ok: torch.Tensor, message) -> None:
    """Raise ValueError(message) unless the 0-d bool tensor ``ok`` is True.

    A check on tensor *values* needs the host to read them. On CPU that is free and the error is raised
    here; on an accelerator reading would sync the host with the device (and break CUDA-graph capture), so
    the check is queued as a device-side assert instead (``torch._assert_async``): a failure surfaces as
    a device assert at the next synchronisation, with ``message`` in it. ``message`` may be a callable,
    called only on CPU failures (to name e.g. the offending row).
    """
    if ok.device.type == "cpu":
        if not bool(ok):
            raise ValueError(message() if callable(message) else message)
    else:
        torch._assert_async(ok, message if isinstance(message, str) else "zoomkern: invalid argument values")
