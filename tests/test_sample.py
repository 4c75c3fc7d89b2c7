import math

import pytest
import torch

import zoomkern as zk
from zoomkern.reference import sample_patches_ref

pytestmark = pytest.mark.usefixtures("each_backend")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rows(p, n):
    return p.expand(n, *p.shape[1:]).contiguous()


def _within(freq, p, n, what):
    """Each frequency within 5 standard errors (+1e-3): a false alarm has odds < 1e-5 per cell."""
    se = torch.sqrt(p * (1 - p) / n)
    bad = (freq - p).abs() > 5 * se + 1e-3
    assert not bad.any(), (
        f"{what}: cell {bad.nonzero()[0].tolist()} freq {freq[bad][0]:.4f} vs p {p[bad][0]:.4f}"
    )


def test_first_draw_frequencies_match_probs():
    p = torch.softmax(torch.randn(1, 37, generator=_gen(1)) * 1.5, 1)
    n = 40000
    s = zk.sample_patches(_rows(p, n), 5, generator=_gen(2))
    freq = torch.bincount(s.indices[:, 0], minlength=37).double() / n
    _within(freq, p[0].double(), n, "first draw")


def test_half_mass_cell_drawn_first_half_the_time():
    # The public-code trap: Gumbel noise on p instead of log p makes this ~uniform.
    p = torch.full((1, 101), 0.5 / 100)
    p[0, 7] = 0.5
    n = 20000
    first = zk.sample_patches(_rows(p, n), 3, generator=_gen(3)).indices[:, 0]
    rate = (first == 7).double().mean().item()
    assert abs(rate - 0.5) < 5 * math.sqrt(0.25 / n), rate


def test_with_replacement_frequencies():
    p = torch.softmax(torch.randn(1, 4, 5, generator=_gen(4)), -1).reshape(1, 4, 5)
    p = p / p.sum()
    n = 8000
    idx = zk.sample_patches(_rows(p, n), 4, replace=True, generator=_gen(5)).indices
    freq = torch.bincount(idx.flatten(), minlength=20).double() / idx.numel()
    _within(freq, p.flatten().double(), idx.numel(), "with replacement")


@pytest.mark.parametrize("shape,k", [((1, 1), 1), ((3, 97), 97), ((2, 13, 17), 10), ((5, 781), 3)])
def test_without_replacement_distinct_and_positive(shape, k):
    g = _gen(6)
    p = torch.rand(shape, generator=g)
    flat = p.view(shape[0], -1)
    if flat.shape[1] > k:
        flat[:, k:][torch.rand(flat[:, k:].shape, generator=g) < 0.5] = 0  # zeros are never drawn
    p = p / p.view(shape[0], -1).sum(1).view(-1, *[1] * (len(shape) - 1))
    s = zk.sample_patches(p, k, generator=g)
    assert s.indices.shape == (shape[0], k) and s.indices.dtype == torch.int64
    for row, pr in zip(s.indices, p.view(shape[0], -1), strict=True):
        assert len(set(row.tolist())) == k
        assert (pr[row] > 0).all()
    torch.testing.assert_close(s.probs, torch.gather(p.view(shape[0], -1), 1, s.indices))


@pytest.mark.parametrize("replace", [False, True])
def test_same_seed_bitwise_identical_and_matches_reference(replace):
    p = torch.softmax(torch.randn(8, 50, 50, generator=_gen(7)), -1)
    p = p / p.sum((1, 2), keepdim=True)
    a = zk.sample_patches(p, 10, replace=replace, generator=_gen(11)).indices
    b = zk.sample_patches(p, 10, replace=replace, generator=_gen(11)).indices
    c = zk.sample_patches(p, 10, replace=replace, generator=_gen(12)).indices
    ref, _ = sample_patches_ref(p, 10, replace=replace, generator=_gen(11))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a == ref).all(1).float().mean() >= 0.99  # backends agree but for rare float near-ties


def test_draw_order_is_descending_keys():
    # With one dominant cell it must come first almost always.
    p = torch.tensor([[0.97] + [0.01] * 3])
    idx = zk.sample_patches(_rows(p, 2000), 2, generator=_gen(8)).indices
    assert (idx[:, 0] == 0).double().mean() > 0.95


def test_sampled_probs_are_differentiable():
    logits = torch.randn(2, 30, requires_grad=True)
    s = zk.sample_patches(zk.spatial_softmax(logits), 4, generator=_gen(9))
    s.probs.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
