"""Monte-Carlo checks: the estimate and its logit-gradient are unbiased, for both replace modes.

Bound: the mean over M independent draws must lie within 5 standard errors (estimated from the same
draws) of the exact value, elementwise, plus 1e-6. For a correct estimator a false alarm per element
has odds < 1e-6; the biased variants (plain autograd, inclusive cumsum) miss by tens of SE here.
"""

import pytest
import torch

import zoomkern as zk
from zoomkern.reference import expectation_ref

pytestmark = pytest.mark.usefixtures("each_backend")


def _setup(seed=0, N=12, D=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, generator=g, dtype=torch.float64) * 1.2
    f = torch.randn(N, D, generator=g, dtype=torch.float64)
    up = torch.randn(D, generator=g, dtype=torch.float64)
    return logits, f, up


def _mc(logits, f, up, k, replace, M=40000, seed=1):
    rows = logits.expand(M, -1).clone().requires_grad_()
    p = zk.spatial_softmax(rows)
    s = zk.sample_patches(p, k, replace=replace, generator=torch.Generator().manual_seed(seed))
    value = zk.expectation(f[s.indices], s.probs, replace=replace)  # (M, D)
    (value @ up).sum().backward()
    return value.detach(), rows.grad


def _exact(logits, f, up):
    x = logits.clone().requires_grad_()
    v = torch.softmax(x, 0) @ f
    (g,) = torch.autograd.grad(v @ up, x)
    return v.detach(), g


def _assert_unbiased(samples, exact, what):
    mean, se = samples.mean(0), samples.std(0) / samples.shape[0] ** 0.5
    err = (mean - exact).abs()
    bad = err > 5 * se + 1e-6
    assert not bad.any(), f"{what}: max err {err.max():.3g}, at SE {se[bad][0]:.3g}"


@pytest.mark.parametrize("replace,k", [(True, 1), (True, 4), (False, 1), (False, 4), (False, 12)])
def test_value_and_logit_gradient_unbiased(replace, k):
    logits, f, up = _setup()
    value, grad = _mc(logits, f, up, k, replace)
    v_exact, g_exact = _exact(logits, f, up)
    _assert_unbiased(value, v_exact, "value")
    _assert_unbiased(grad, g_exact, "logit gradient")


def test_plain_autograd_would_be_biased():
    """The check above can fail: autograd through the forward formula misses by many SE."""
    logits, f, up = _setup()
    M, k = 40000, 4
    rows = logits.expand(M, -1).clone().requires_grad_()
    p = zk.spatial_softmax(rows)
    s = zk.sample_patches(p, k, generator=torch.Generator().manual_seed(1))
    (expectation_ref(f[s.indices], s.probs) @ up).sum().backward()
    _, g_exact = _exact(logits, f, up)
    with pytest.raises(AssertionError):
        _assert_unbiased(rows.grad, g_exact, "biased")


@pytest.mark.parametrize("replace", [False, True])
def test_feature_gradient_and_shapes(replace):
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 5, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    probs = torch.softmax(torch.randn(2, 5, generator=g, dtype=torch.float64), 1)
    out = zk.expectation(feats, probs, replace=replace)
    assert out.shape == (2, 4, 3)
    torch.testing.assert_close(out, expectation_ref(feats, probs, replace=replace))
    # Gradient to the features is the exact derivative of the forward value.
    assert torch.autograd.gradcheck(lambda x: zk.expectation(x, probs, replace=replace), (feats,))
