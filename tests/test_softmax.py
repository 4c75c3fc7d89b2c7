import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import zoomkern as zk
from tests._tol import close
from zoomkern.reference import spatial_softmax_ref

pytestmark = pytest.mark.usefixtures("each_backend")

SHAPES = [(1, 1), (1, 97), (3, 781), (2, 1823), (2, 1, 1), (2, 13, 17), (4, 64, 64), (2, 63, 65)]


def _naive(logits, temperature, smoothing, mask):
    """Independent formula in float64: softmax, smoothing, entropy."""
    B = logits.shape[0]
    x = logits.reshape(B, -1).double() / temperature
    m = mask.reshape(B, -1) if mask is not None else torch.ones_like(x, dtype=torch.bool)
    e = torch.where(m, torch.exp(x - x.masked_fill(~m, -math.inf).amax(1, keepdim=True)), 0.0)
    q = e / e.sum(1, keepdim=True)
    p = torch.where(m, (1 - smoothing) * q + smoothing / m.sum(1, keepdim=True).double(), 0.0)
    ent = -(torch.where(p > 0, p * p.log(), 0.0)).sum(1)
    return p.reshape(logits.shape), ent


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "smoothing,temperature,masked", [(0.0, 1.0, False), (0.1, 0.5, True), (0.0, 3.0, True)]
)
def test_forward_matches_reference(shape, dtype, smoothing, temperature, masked):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(shape, generator=g) * 4).to(dtype)
    mask = None
    if masked:
        mask = torch.rand(shape, generator=g) > 0.3
        mask.view(shape[0], -1)[:, 0] = True
    p, ent = zk.spatial_softmax(
        logits, temperature=temperature, smoothing=smoothing, mask=mask, return_entropy=True
    )
    pn, en = _naive(logits, temperature, smoothing, mask)
    assert p.dtype == dtype and p.shape == logits.shape and ent.shape == (shape[0],)
    close(p.double(), pn, dtype, "probs")
    close(ent.double(), en, dtype if dtype != torch.float32 else torch.float32, "entropy")
    if mask is not None:
        assert (p[~mask] == 0).all(), "masked positions must be exactly 0"
    pr = spatial_softmax_ref(logits, temperature=temperature, smoothing=smoothing, mask=mask)
    close(p, pr, dtype, "probs vs reference")


@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (3, 5, 9)])
@pytest.mark.parametrize("smoothing,masked", [(0.0, False), (0.2, False), (0.15, True)])
def test_gradcheck_float64(shape, smoothing, masked):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    mask = None
    if masked:
        mask = torch.rand(shape, generator=g) > 0.4
        mask.view(shape[0], -1)[:, 0] = True

    def f(x):
        return zk.spatial_softmax(x, temperature=0.7, smoothing=smoothing, mask=mask, return_entropy=True)

    assert torch.autograd.gradcheck(f, (logits,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gradients_match_autograd_of_naive(dtype):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 31, 29, generator=g).to(dtype).requires_grad_()
    mask = torch.rand(3, 31, 29, generator=g) > 0.5
    up_p, up_e = torch.randn(3, 31, 29, generator=g), torch.randn(3, generator=g)
    p, e = zk.spatial_softmax(logits, smoothing=0.05, mask=mask, return_entropy=True)
    (gl,) = torch.autograd.grad((p.float() * up_p).sum() + (e.float() * up_e).sum(), logits)
    x = logits.detach().double().requires_grad_()
    pn, en = _naive(x, 1.0, 0.05, mask)
    (gn,) = torch.autograd.grad((pn * up_p.double()).sum() + (en * up_e.double()).sum(), x)
    close(gl.double(), gn, dtype if dtype != torch.float32 else torch.float32, "grad")


@given(st.integers(1, 3), st.integers(1, 300), st.floats(-50, 50))
def test_shift_invariance(B, N, shift):
    logits = torch.randn(B, N, dtype=torch.float64)
    close(zk.spatial_softmax(logits + shift), zk.spatial_softmax(logits), torch.float64)


def test_non_contiguous_input():
    base = torch.randn(4, 40, 50)
    view = base.transpose(1, 2)
    close(zk.spatial_softmax(view), zk.spatial_softmax(view.contiguous()))


def test_extreme_logits_no_nan():
    logits = torch.tensor([[1e30, -1e30, 0.0], [-1e4, -1e4, -1e4]])
    p, e = zk.spatial_softmax(logits, return_entropy=True)
    assert torch.isfinite(p).all() and torch.isfinite(e).all()
    close(p[0], torch.tensor([1.0, 0.0, 0.0]))
