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


def test_with_replacement_resolves_cells_below_2_pow_23():
    # Cells alternating 2^-24 and 3 * 2^-24 of the mass, then one big cell. With 23-bit uniforms every draw
    # into the small region landed on a larger cell (the small ones were never drawn); with 52-bit uniforms
    # and a float64 cdf the small cells get their share: hits ~ Binomial(n = 2^17, 2^13 * 2^-24 = 2^-11),
    # mean 64, sd 8; the bound [16, 112] (6 sd) fails by chance with odds below 1e-8.
    M = 2**14
    p = torch.full((1, M + 1), 3 * 2.0**-24, dtype=torch.float32)
    p[0, 0:M:2] = 2.0**-24
    p[0, M] = 1.0 - p[0, :M].double().sum().item()
    idx = zk.sample_patches(_rows(p, 8), 2**14, replace=True, generator=_gen(13)).indices
    hits = int(((idx < M) & (idx % 2 == 0)).sum())
    assert 16 <= hits <= 112, hits


def test_gumbel_noise_resolves_the_smallest_exponentials():
    # Keys are p / E: the top of a huge row is decided by its smallest E = -log1p(-v). 23-bit uniforms put
    # E on a grid of 2^-23 near 0 (so rows beyond ~1.7e7 cells tied, and ties went to the lowest index);
    # 32-bit ones resolve it to 2^-33. Of 2^20 uniforms, ~2^10 have v < 2^-10; on a 2^-23 grid ~64 of
    # those would collide (birthday bound), on the 32-bit one the expected count is 2^-4; we allow 3.
    from zoomkern import _rng

    cols = torch.arange(2**20)[None]
    for dtype in (torch.float32, torch.float64):
        v = _rng.gumbel_uniform(torch.tensor([17, 99]), torch.zeros(1, 1, dtype=torch.int64), cols, dtype)
        e = -torch.log1p(-v)
        small = e[e < 2.0**-10]
        assert 800 < small.numel() < 1250
        assert small.numel() - small.unique().numel() <= 3
        assert v.max() < 1 and v.min() > 0 and torch.isfinite(e).all()


def test_cuda_check_is_asynchronous_and_names_k():
    # On CUDA the k > positive-cells check cannot sync with the host: it is a torch._assert_async on the
    # drawn cells (on CPU tensors that raises at once, which is how this test sees its message).
    from zoomkern.ops.sample import _check_draws

    p = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    _check_draws(p, torch.tensor([[1, 0]]), 2, False, sync=False)
    with pytest.raises(RuntimeError, match="k=3 is larger than the number of positive positions"):
        _check_draws(p, torch.tensor([[1, 0, 2]]), 3, False, sync=False)
    with pytest.raises(RuntimeError, match="no positive probability"):
        _check_draws(torch.zeros(1, 4), torch.tensor([[3, 3]]), 2, True, sync=False)


def test_no_positions_is_refused_on_every_device_path():
    with pytest.raises(ValueError, match="no positions"):
        zk.sample_patches(torch.zeros(2, 0), 3, replace=True)


def test_sample_checks_do_not_sync_on_cuda(monkeypatch):
    # Fake CUDA tensors carry no data: any host read raises, torch._assert_async passes (see
    # tests/test_no_host_sync.py). The op body is called directly; the kernel is stubbed (shapes only).
    from torch._subclasses.fake_tensor import FakeTensorMode

    import zoomkern.ops.sample as sample_op
    from zoomkern import backends

    class _Stub:
        @staticmethod
        def sample(flat, k, replace, seed):
            return flat.new_zeros((flat.shape[0], k), dtype=torch.int64)

    monkeypatch.setattr(backends, "select", lambda op, device: ("stub", _Stub))
    with FakeTensorMode(allow_non_fake_inputs=True):
        probs = torch.empty(2, 5, 7, device="cuda")
        seed = torch.zeros(2, dtype=torch.int64, device="cuda")
        shapes = [sample_op._sample_patches._init_fn(probs, 3, r, seed).shape for r in (False, True)]
    assert shapes == [(2, 3), (2, 3)]
