"""zoomkern::spatial_softmax: softmax over all positions of each sample, entropy fused."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import backends
from . import _checks, _fast


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _forward(logits: Tensor, temperature: float, smoothing: float, mask: Optional[Tensor]):
    """The op's body: what the custom op runs, and what spatial_softmax calls directly (_fast.direct)."""
    B, dtype = logits.shape[0], logits.dtype
    acc = _acc_dtype(dtype)
    # Conversions only where needed: each no-op .to() is ~1 us on a ~0.5 ms call the target counts.
    x = logits.reshape(B, -1)
    x = (x if x.dtype == acc else x.to(acc)).contiguous()
    m = mask.reshape(B, -1).contiguous() if mask is not None else None
    if m is not None:  # no host sync on CUDA (a device-side assert there); ValueError on CPU
        rows_ok = m.any(1)
        _checks.data_check(
            rows_ok.all(),
            lambda: (
                f"mask has no True position for sample {int((~rows_ok).nonzero()[0, 0])}: "
                "its softmax is undefined"
            ),
        )
    _, kern = backends.select("softmax_fwd", logits.device)
    p, ent = kern.softmax_fwd(x, m, temperature, smoothing)
    if acc != dtype:
        p, ent = p.to(dtype), ent.to(dtype)
    return (p if logits.dim() == 2 else p.view(logits.shape)), ent


@torch.library.custom_op("zoomkern::spatial_softmax", mutates_args=())
def _spatial_softmax(
    logits: Tensor, temperature: float, smoothing: float, mask: Optional[Tensor]
) -> tuple[Tensor, Tensor]:
    return _forward(logits, temperature, smoothing, mask)


@_spatial_softmax.register_fake
def _(logits, temperature, smoothing, mask):
    return torch.empty_like(logits), logits.new_empty(logits.shape[:1])


@torch.library.custom_op("zoomkern::spatial_softmax_backward", mutates_args=())
def _spatial_softmax_backward(
    probs: Tensor,
    grad_probs: Tensor,
    grad_entropy: Tensor,
    temperature: float,
    smoothing: float,
    mask: Optional[Tensor],
) -> Tensor:
    B = probs.shape[0]
    acc = _acc_dtype(probs.dtype)
    p = probs.reshape(B, -1).to(acc).contiguous()
    gp = grad_probs.reshape(B, -1).to(acc).contiguous()
    ge = grad_entropy.to(acc).contiguous()
    m = mask.reshape(B, -1).contiguous() if mask is not None else None
    _, kern = backends.select("softmax_bwd", probs.device)
    return kern.softmax_bwd(p, gp, ge, m, temperature, smoothing).to(probs.dtype).reshape(probs.shape)


@_spatial_softmax_backward.register_fake
def _(probs, grad_probs, grad_entropy, temperature, smoothing, mask):
    return torch.empty_like(probs)


def _setup_context(ctx, inputs, output):
    _, temperature, smoothing, mask = inputs
    ctx.save_for_backward(output[0], mask)
    ctx.temperature, ctx.smoothing = temperature, smoothing


def _backward(ctx, grad_probs, grad_entropy):
    probs, mask = ctx.saved_tensors
    if grad_probs is None:
        grad_probs = torch.zeros_like(probs)
    if grad_entropy is None:
        grad_entropy = probs.new_zeros(probs.shape[:1])
    g = _spatial_softmax_backward(probs, grad_probs, grad_entropy, ctx.temperature, ctx.smoothing, mask)
    return g, None, None, None


_spatial_softmax.register_autograd(_backward, setup_context=_setup_context)


def spatial_softmax(logits, *, temperature=1.0, smoothing=0.0, mask=None, return_entropy=False):
    """Softmax over all positions of each sample.

    logits (B, *S) float16/bfloat16/float32/float64 (S = (H, W) or (N,)); computed in fp32 (fp64 for
    fp64) and returned in the input dtype and shape. ``smoothing=s`` gives ``(1-s) p + s/n_valid``.
    ``mask`` (bool, same shape): False positions get exactly 0. With ``return_entropy`` also returns the
    entropy (B,) of the returned probabilities, from the same pass. Differentiable in ``logits``.
    """
    _checks.tensor("logits", logits, dtypes=_checks.FLOATS, min_dim=2)
    if logits.numel() == 0:
        raise ValueError(
            f"logits must have at least one position per sample, got shape {tuple(logits.shape)}"
        )
    temperature = _checks.finite_number("temperature", temperature, lo=0.0, lo_open=True)
    smoothing = _checks.finite_number("smoothing", smoothing, lo=0.0, hi=1.0)
    if mask is not None:
        _checks.tensor("mask", mask, dtypes=(torch.bool,))
        if mask.shape != logits.shape:
            raise ValueError(f"mask has shape {tuple(mask.shape)} but logits have {tuple(logits.shape)}")
        _checks.same_device("mask", mask, "logits", logits)
    # No autograd, tracing or mode to serve: the body without the custom-op dispatch (~40 us less).
    op = _forward if _fast.direct(logits, mask) else _spatial_softmax
    probs, entropy = op(logits, temperature, smoothing, mask)
    return (probs, entropy) if return_entropy else probs
