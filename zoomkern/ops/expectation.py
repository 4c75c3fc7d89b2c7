"""zoomkern::expectation: the sampled estimate of sum_i p_i f_i with an unbiased p-gradient.

Plain autograd through the forward formula is biased (it ignores that which positions were drawn
depends on p), so the probability gradient is written by hand (ALGORITHMS.md):
  with replacement:     d/dp_m = <g, f_m> / (k p_m)
  without replacement:  d/dp_m = [(k-1-m) <g, f_m> + <g, f_m> pm_m / p_m] / k,  pm_m = 1 - sum_{j<m} p_j
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import reference
from . import _checks


@torch.library.custom_op("zoomkern::expectation", mutates_args=())
def _expectation(features: Tensor, sampled_probs: Tensor, replace: bool) -> Tensor:
    return reference.expectation_ref(features, sampled_probs, replace=replace)


@_expectation.register_fake
def _(features, sampled_probs, replace):
    return features.new_empty((features.shape[0], *features.shape[2:]))


def _setup_context(ctx, inputs, output):
    features, sampled_probs, replace = inputs
    ctx.save_for_backward(features, sampled_probs)
    ctx.replace = replace


def _backward(ctx, grad):
    features, sampled_probs = ctx.saved_tensors
    grad_f = grad_p = None
    if ctx.needs_input_grad[0]:
        w = reference.expectation_weights(sampled_probs, ctx.replace).to(features.dtype)
        grad_f = w.view(*w.shape, *([1] * (features.dim() - 2))) * grad[:, None]
    if ctx.needs_input_grad[1]:
        grad_p = reference.expectation_prob_grad_ref(features, sampled_probs, grad, replace=ctx.replace)
    return grad_f, grad_p, None


_expectation.register_autograd(_backward, setup_context=_setup_context)


def expectation(features, sampled_probs, *, replace=False):
    """Estimate ``sum_i p_i f_i`` from ``features`` (B, k, *D) of the drawn positions (draw order) and
    their ``sampled_probs`` (B, k). Returns (B, *D). Value and probability-gradient are unbiased."""
    _checks.tensor("features", features, dtypes=_checks.FLOATS, min_dim=2)
    _checks.tensor("sampled_probs", sampled_probs, dtypes=_checks.FLOATS, dim=2)
    if features.shape[:2] != sampled_probs.shape:
        raise ValueError(
            f"features (B, k, *D) {tuple(features.shape)} and sampled_probs (B, k) "
            f"{tuple(sampled_probs.shape)} disagree on (B, k)"
        )
    _checks.same_device("sampled_probs", sampled_probs, "features", features)
    return _expectation(features, sampled_probs, bool(replace))
