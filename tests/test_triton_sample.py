"""The Triton sampling kernels against reference.sample (same uniforms, so the same draws).

Like tests/test_triton.py: without a GPU, ``test_interpreted_in_subprocess`` reruns this file with
TRITON_INTERPRET=1, where the kernels run on CPU tensors; with a GPU they run here on CUDA tensors.
"""

import sys

import pytest
import torch

triton = pytest.importorskip("triton")

import zoomkern.triton as zt  # noqa: E402
from tests._triton_env import DEVICE, needs_kernels, rerun_interpreted  # noqa: E402
from zoomkern import reference as R  # noqa: E402

zs = sys.modules["zoomkern.triton.sample"]  # zoomkern.triton re-exports ``sample``, shadowing the module


def _probs(B, N, dtype, zero_frac, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(B, N, generator=g, dtype=dtype) ** 3
    p[torch.rand(B, N, generator=g) < zero_frac] = 0
    p[:, 0] = p[:, 0] + 0.01  # at least one positive position
    return (p / p.sum(1, keepdim=True)).to(DEVICE)


def _seed(a, b):
    return torch.tensor([a % 2**31, b % 2**31], dtype=torch.int64, device=DEVICE)


def _same_draws(idx, ref, p, seed):
    """Equal, except where two keys are within float32 rounding (tl.log and torch.log1p differ by ulps)."""
    if torch.equal(idx, ref):
        return
    assert p.dtype == torch.float32, "float64 keys must agree exactly"
    B, N = p.shape
    rows = torch.arange(B, device=p.device)[:, None]
    e = -torch.log1p(
        -R._rng.gumbel_uniform(seed, rows, torch.arange(N, device=p.device)[None], torch.float64)
    )
    keys = torch.where(p > 0, p.double() / e, -1.0)
    a, b = keys.gather(1, idx), keys.gather(1, ref)
    assert ((a - b).abs() <= 1e-6 * b.abs()).all(), "draws differ beyond a float32 near-tie"


@needs_kernels
@pytest.mark.parametrize(
    "B,N,k", [(1, 1, 1), (3, 7, 3), (2, 97, 20), (2, 4095, 5), (1, 4096, 9), (2, 4097, 6), (1, 9001, 3),
              (3, 20000, 64)],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_without_replacement(B, N, k, dtype):
    p = _probs(B, N, dtype, zero_frac=0.3, seed=N)
    k = min(k, int((p > 0).sum(1).min()))
    seed = _seed(N * 7919, 2**31 - 1 - k)
    idx = zt.sample(p, k, False, seed)
    assert idx.dtype == torch.int64 and idx.shape == (B, k)
    _same_draws(idx, R.sample(p, k, False, seed), p, seed)
    assert (torch.gather(p, 1, idx) > 0).all()


@needs_kernels
@pytest.mark.parametrize("B,N,k", [(2, 9001, 6000), (1, 20000, 3300)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_many_draws_sorts_keys(B, N, k, dtype):
    # chunks * k > MAX_CANDIDATES: one pass writes the keys and a stable sort orders them (it used to sweep
    # the row k times on one program, re-hashing every cell per draw).
    p = _probs(B, N, dtype, zero_frac=0.0, seed=k)
    seed = _seed(k, N)
    _same_draws(zt.sample(p, k, False, seed), R.sample(p, k, False, seed), p, seed)


@needs_kernels
@pytest.mark.parametrize("N,k", [(50, 6), (50, 50), (9001, 7), (9001, 6000)])
def test_k_above_positive_cells_gives_valid_distinct_indices(N, k):
    # The op asserts (asynchronously on CUDA); the kernels must still write valid, distinct indices: the 3
    # positive cells in key order, then zero cells in index order (like reference.sample). They used to
    # write repeats or the index N, and the gather after them hit a device assert.
    p = torch.zeros(2, N, dtype=torch.float32)
    p[:, [N // 2, 1, N - 1]] = torch.tensor([0.5, 0.3, 0.2])
    p = p.to(DEVICE)
    seed = _seed(5, 6)
    idx = zt.sample(p, k, False, seed)
    assert ((idx >= 0) & (idx < N)).all()
    assert (idx.sort(1).values.diff(dim=1) != 0).all(), "repeated index"
    assert torch.equal(idx, R.sample(p, k, False, seed))


@needs_kernels
@pytest.mark.parametrize(
    "B,N,k", [(1, 1, 1), (3, 7, 5), (2, 1023, 15), (1, 1024, 16), (2, 1025, 17), (2, 3001, 40), (2, 9001, 33)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_with_replacement(B, N, k, dtype):
    p = _probs(B, N, dtype, zero_frac=0.5, seed=N + 1)
    if N > 1:
        p[:, -1] = 0  # trailing zeros exercise the clamp onto the last positive position
        p = p / p.sum(1, keepdim=True)
    seed = _seed(k, N)
    idx = zt.sample(p, k, True, seed)
    assert torch.equal(idx, R.sample(p, k, True, seed))
    assert (torch.gather(p, 1, idx) > 0).all()


@needs_kernels
def test_with_replacement_no_positions_is_refused():
    # N = 0 used to read probs[b, 0] out of bounds (the interpreter segfaulted).
    with pytest.raises(ValueError, match="N = 0"):
        zt.sample(torch.zeros(2, 0, device=DEVICE), 3, True, _seed(1, 2))
    assert zt.sample(torch.zeros(2, 0, device=DEVICE), 0, True, _seed(1, 2)).shape == (2, 0)


@needs_kernels
def test_with_replacement_resolves_cells_below_2_pow_23():
    # Cells alternating 2^-24 and 3 * 2^-24 of the mass, then one big cell. 23-bit uniforms landed every draw
    # of the small region on the larger cells: the small ones were never drawn (tests/test_sample.py checks
    # their rate on the reference and CPU backends). Here: the first seed (searched on the reference) whose
    # 16 draws hit a small cell, and the kernel must draw exactly the same cells (interpreted programs are
    # slow, so a statistical count would take minutes).
    M = 2**18
    p = torch.full((1, M + 1), 3 * 2.0**-24, dtype=torch.float32)
    p[0, 0:M:2] = 2.0**-24
    p[0, M] = 1.0 - p[0, :M].double().sum().item()
    p = p.to(DEVICE)
    for s in range(200):  # P(a small-cell hit in 16 draws) = 1 - (1 - 2^-7)^16 ~ 0.12 per seed
        seed = _seed(s, 7)
        ref = R.sample(p, 16, True, seed)
        if ((ref < M) & (ref % 2 == 0)).any():
            break
    else:
        raise AssertionError("no seed drew a small cell")
    assert torch.equal(zt.sample(p, 16, True, seed), ref)


class _Recorder:
    """Stands in for a kernel: records each launch grid, launches only when asked."""

    def __init__(self, kern, grids, launch):
        self.kern, self.grids, self.launch = kern, grids, launch

    def __getitem__(self, grid):
        self.grids.append(tuple(grid))
        return self.kern[grid] if self.launch else (lambda *a, **kw: None)


@needs_kernels
@pytest.mark.parametrize("replace,N,k", [(True, 5000, 70000), (False, 9001, 4), (False, 9001, 6000)])
def test_launch_grids_are_one_dimensional(monkeypatch, replace, N, k):
    # CUDA caps grid axes 1 and 2 at 65535: k = 70000 draws used to sit on axis 1.
    grids = []
    for name in [n for n in dir(zs) if n.endswith("_kernel")]:
        monkeypatch.setattr(zs, name, _Recorder(getattr(zs, name), grids, launch=k < 65536))
    p = _probs(1, N, torch.float32, 0.0, seed=1)
    zs.sample(p, k, replace, _seed(1, 2))
    assert grids and all(len(g) == 1 for g in grids), grids


@needs_kernels
def test_sample_bitwise_repeatable_and_seed_sensitive():
    p = _probs(4, 300, torch.float32, 0.0, seed=3)
    s1, s2 = _seed(1, 2), _seed(1, 3)
    assert torch.equal(zt.sample(p, 10, False, s1), zt.sample(p, 10, False, s1))
    assert not torch.equal(zt.sample(p, 10, False, s1), zt.sample(p, 10, False, s2))


@pytest.mark.skipif(DEVICE is not None, reason="kernels already ran here (interpreted, or compiled on CUDA)")
def test_interpreted_in_subprocess():
    rerun_interpreted(__file__)
