"""zoomkern::sample_patches: Gumbel-top-k (without replacement) or i.i.d. draws (with)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .. import _rng, backends
from . import _checks, _fast


class Samples(NamedTuple):
    """indices (B, k) int64 flat into S, in draw order; probs (B, k) the probabilities there
    (differentiable in the input probs)."""

    indices: Tensor
    probs: Tensor


def _check_values(flat: Tensor) -> None:
    """NaN or negative probabilities: a ValueError (CPU only: it needs the values on the host)."""
    lowest = flat.min()
    if not bool(lowest >= 0):  # one reduction catches NaN (compares False) and negatives
        raise ValueError(
            "probs contains NaN" if bool(torch.isnan(flat).any()) else "probs contains negative values"
        )


def _check_draws(flat: Tensor, idx: Tensor, k: int, replace: bool, *, sync: bool) -> None:
    """Checked after the kernel, on the (B, k) drawn cells only: every kernel draws positive cells first,
    so a drawn cell with p <= 0 means a row had fewer than k positive cells (without replacement) or none
    (with). ``sync`` (CPU): a ValueError now. Otherwise ``torch._assert_async``, which raises at a later
    synchronisation without stalling the stream; the kernels wrote valid, distinct indices meanwhile."""
    ok = (flat.gather(1, idx) > 0).all()
    if replace:
        msg = "probs has a sample with no positive probability"
    else:
        msg = (
            f"k={k} is larger than the number of positive positions of some sample; "
            "sampling without replacement needs k distinct positions"
        )
    if not sync:
        torch._assert_async(ok, f"sample_patches: {msg}")
    elif not bool(ok):
        if not replace:  # the slow count, only to name it in the error
            msg = msg.replace("positions of", f"positions ({int(torch.count_nonzero(flat, dim=1).min())}) of")
        raise ValueError(msg)


def _draw(probs: Tensor, k: int, replace: bool, seed: Tensor) -> Tensor:
    """The op's body: what the custom op runs, and what sample_patches calls directly (_fast.direct)."""
    B = probs.shape[0]
    flat = probs.reshape(B, -1)
    if flat.dtype not in (torch.float32, torch.float64):  # a no-op .to() still costs ~1 us
        flat = flat.to(torch.float32)
    flat = flat.contiguous()
    sync = flat.device.type == "cpu"
    name, kern = backends.select("sample", probs.device)
    if sync and flat.numel() and name != "cpu":  # the cpu kernel checks the values in its own pass
        _check_values(flat)
    idx = kern.sample(flat, k, replace, seed)
    if idx.numel():
        _check_draws(flat, idx, k, replace, sync=sync)
    return idx


@torch.library.custom_op("zoomkern::sample_patches", mutates_args=())
def _sample_patches(probs: Tensor, k: int, replace: bool, seed: Tensor) -> Tensor:
    return _draw(probs, k, replace, seed)


@_sample_patches.register_fake
def _(probs, k, replace, seed):
    return probs.new_empty((probs.shape[0], k), dtype=torch.int64)


def sample_patches(probs, k, *, replace=False, generator=None) -> Samples:
    """Draw ``k`` positions per sample from ``probs`` (B, *S), each sample summing to 1.

    Without replacement: Gumbel-top-k on ``log(probs)``; indices in draw order, distinct, never a
    zero-probability position. With replacement: i.i.d. draws. Same generator state, same result.
    Returns ``Samples(indices (B, k) int64, probs (B, k))``.
    """
    _checks.tensor("probs", probs, dtypes=_checks.FLOATS, min_dim=2)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    n = probs[0].numel() if probs.shape[0] else 0
    if not replace and k > n:
        raise ValueError(f"k={k} is larger than the number of positions ({n}) without replacement")
    if probs.shape[0] and n == 0:
        raise ValueError(f"probs has no positions (shape {tuple(probs.shape)}); cannot draw k={k}")
    seed = _rng.make_seed(probs.device, generator)
    # No tracing or mode to serve: the body without the custom-op dispatch (the indices carry no gradient).
    p = probs.detach()
    indices = (_draw if _fast.direct(p, seed) else _sample_patches)(p, k, bool(replace), seed)
    return Samples(indices, torch.gather(probs.reshape(probs.shape[0], -1), 1, indices))
